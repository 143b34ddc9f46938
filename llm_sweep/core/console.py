"""What a user reads: results and status on stdout, one-line warnings and errors on stderr,
and the exit code 2 of every `python -m llm_sweep.<command>` for a user error. The one place
that prints; diagnostics go through `logging` (Hydra configures it for its apps,
`configure_logging` for the others)."""
from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, NoReturn, TypeVar

from llm_sweep.core.errors import LlmSweepError

USER_ERROR_EXIT_CODE = 2  # as argparse uses for bad arguments

F = TypeVar("F", bound=Callable)


def _write(stream, text: str) -> None:
    """One write call per line, flushed: the processes of a multi-process run share one
    terminal or log, and a line written in two pieces (as `print` writes text and newline)
    interleaves with the same line from another rank."""
    stream.write(text)
    stream.flush()


def show(text: str, end: str = "\n") -> None:
    """A result or a status line (a summary block, a table, "wrote ...") on stdout."""
    _write(sys.stdout, f"{text}{end}")


def warn(text: str) -> None:
    _write(sys.stderr, f"warning: {text}\n")


def error(text: object) -> None:
    _write(sys.stderr, f"error: {text}\n")


def exit_with_error(exc: BaseException | str, code: int = USER_ERROR_EXIT_CODE) -> NoReturn:
    """Print `error: <message>` on stderr and exit (with the user-error code unless told)."""
    error(exc)
    sys.exit(code)


def user_errors(command: F) -> F:
    """Run `command`, turning an LlmSweepError into one line and exit code 2."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LlmSweepError as exc:
            exit_with_error(exc)

    return wrapper  # type: ignore[return-value]


OWN_LOGGERS = ("llm_sweep", "hydra", "__main__")


class NoLibraryInfo(logging.Filter):
    """The console's filter (conf/hydra/job_logging/llm_sweep.yaml): llm_sweep's and Hydra's
    lines and every warning pass; a library's INFO chatter stays in the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == "root" or record.name.split(".")[0] in OWN_LOGGERS
        return own or record.levelno >= logging.WARNING


def configure_logging(level: int = logging.INFO) -> None:
    """Diagnostics of a command that is not a Hydra app, as Hydra shows its own: one line
    each on stderr, at INFO and above."""
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
