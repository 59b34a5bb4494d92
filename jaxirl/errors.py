"""Exceptions with one-line, actionable messages.

Every error that user input can cause (a flag, a file, a dataset column, a
checkpoint tensor) is raised as a subclass of :class:`JaxIRLError`. Launchers
catch it and print ``error: <message>`` on one line instead of a traceback.
"""


class JaxIRLError(Exception):
    """Base class: the message names the flag, file, field or tensor at fault."""

    def __init__(self, message: str):
        # One line only: launchers print it as is.
        super().__init__(" ".join(str(message).split()))


class ConfigError(JaxIRLError):
    """An invalid configuration value or flag combination."""


class CheckpointError(JaxIRLError):
    """A missing, unreadable or mismatched checkpoint or model folder."""


class DataError(JaxIRLError):
    """An unreadable, empty or malformed dataset."""


class RewardError(JaxIRLError):
    """A reward model failed, or produced a non-finite or missing score."""


class RunFolderError(JaxIRLError):
    """An output folder that cannot be created, holds other data, or another run's settings."""


class DivergenceError(JaxIRLError):
    """Training produced a non-finite loss, KL, gradient or parameter; the message names
    the iteration (or epoch, step) and the quantity."""
