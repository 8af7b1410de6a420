"""Exceptions that reach users: each names the file or key at fault and says what to do."""


class MerflowError(Exception):
    """Base class: an error a user can act on (the CLI prints it without a traceback)."""


class ConfigError(MerflowError):
    """The configuration is wrong: the message names the key and what is allowed."""


class DatasetError(MerflowError):
    """A dataset cannot be read: missing root, broken label file, duplicate ids."""


class AudioError(MerflowError):
    """One audio file cannot be decoded or is unusable; carries the path and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
