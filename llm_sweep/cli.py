"""What every `python -m llm_sweep.<command>` does with a user error: one line, exit code 2."""
from __future__ import annotations

import functools
import sys
from typing import Callable, NoReturn, TypeVar

from llm_sweep.errors import LlmSweepError

USER_ERROR_EXIT_CODE = 2  # as argparse uses for bad arguments

F = TypeVar("F", bound=Callable)


def exit_with_error(exc: BaseException | str) -> NoReturn:
    """Print `error: <message>` on stderr and exit with the user-error code."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT_CODE)


def user_errors(command: F) -> F:
    """Run `command`, turning an LlmSweepError into one line and exit code 2."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LlmSweepError as exc:
            exit_with_error(exc)

    return wrapper  # type: ignore[return-value]
