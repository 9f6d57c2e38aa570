"""User-facing errors. Each names the file, option key, value and the fix."""

from __future__ import annotations


class SrodeError(Exception):
    """Base class of every error srode shows to a user (the CLI prints it without a traceback)."""


class OptionError(SrodeError):
    """An option file is wrong: names the file, the key path, the value and the fix."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ""
        if file:
            where += f"{file}: "
        if key:
            where += f"option '{key}': "
        super().__init__(where + message)
        self.file = file
        self.key = key


class UnknownComponentError(OptionError):
    """An option names a `type:` that no installed distribution provides."""


class DuplicateComponentError(SrodeError):
    """Two distributions (or two objects) claim the same component name."""


class PluginLoadError(SrodeError):
    """A plugin could not be imported or is incompatible with this core."""


class MissingWeightsError(SrodeError):
    """Pretrained weights are needed but not on disk (nothing is ever downloaded)."""


class TrainingAborted(SrodeError):
    """Training stopped on purpose (non-finite losses, NFE limit, ...) with a message saying why."""


class CheckpointError(SrodeError):
    """A checkpoint cannot be read (missing, empty, truncated, corrupt) or written (disk full, permissions)."""


class ExperimentInUse(SrodeError):
    """Another live process is training in the same experiment folder."""


class DatasetError(OptionError):
    """A dataset cannot be trained or validated on (empty folder, unreadable image, LR/HR mismatch, ...)."""
