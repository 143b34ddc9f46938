"""Errors that mean "the input is wrong": the entry points print them as one line."""


class LlmSweepError(Exception):
    """Base class: a user-facing problem with a clear, one-line message."""


class ConfigError(LlmSweepError, ValueError):
    """A configuration problem, naming the key and the allowed values."""


class DataError(LlmSweepError):
    """A problem with input data or the token cache, naming the file or key."""


class TrainingDiverged(LlmSweepError):
    """The loss became NaN or infinite."""


class PeerLost(LlmSweepError):
    """Another process of a data-parallel run died or stopped answering."""


class DiskFull(LlmSweepError):
    """A write met a full disk or quota: names the file and the bytes it needed."""
