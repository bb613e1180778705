"""Project exceptions. User errors derive from `NurdadError`; the CLI prints them as one line."""


class NurdadError(Exception):
    """A user-facing error: bad input, bad configuration, unusable file. Exit code 2 in the CLI."""


class ConfigError(NurdadError):
    """A configuration value or option is invalid (names the field and what was expected)."""


class SchemaError(NurdadError):
    """A data file does not follow nurdad's HDF5 schema (names the file and the dataset)."""


class RunDirError(NurdadError):
    """A run directory is missing, locked by another run, or from an incompatible version."""


class NotFittedError(NurdadError):
    """A detector was used before `fit`."""


class TrainingDivergedError(NurdadError):
    """A loss became NaN/inf; the last good checkpoint is kept."""
