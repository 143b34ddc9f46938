"""Secrets never leave the process: URIs and `key=value` text are redacted before they
become params, tags, artifacts or log lines."""
from __future__ import annotations

import re

# Both patterns match a name only from its first character (the lookbehinds): a long run
# of word characters then costs a linear scan, not a quadratic one.
_URI_PASSWORD = re.compile(r"(?<![\w+.-])(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^/:@\s]*):[^/@\s]*@")
# `key=value` where the key ends in a secret's name: query strings (?token=,
# &X-Amz-Signature=) and overrides (data.hf_token=); `budget.tokens=` is not one.
_SECRET_ASSIGNMENT = re.compile(
    r"(?<![\w.-])(?P<key>[\w.-]*(?:token|key|secret|password|passwd|pwd|signature|sig|credential)=)"
    r"[^&;#\s]*", re.IGNORECASE)
_SECRET_KEY = re.compile(r"^(?:.*_)?(?:password|passwd|secret|token|api_key|apikey|access_key)$",
                         re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with URI passwords and the values of secret-looking keys replaced by ***."""
    text = _URI_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)
    return _SECRET_ASSIGNMENT.sub(r"\g<key>***", text)


def is_secret_key(key: str) -> bool:
    """A config key whose value is a secret (`hf_token`, `password`), not `tokens`."""
    return bool(_SECRET_KEY.match(key))
