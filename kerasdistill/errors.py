"""The one exception type users see for bad input."""


class DistillError(ValueError):
    """A problem with the user's input (flags, data, configuration).

    Entry points catch it and print its message alone, without a traceback:
    the message must say what is wrong and how to fix it.
    """


class DataNotFoundError(DistillError):
    """The data a run needs are not on this machine (no file, no prepared TFDS data, or
    the file lacks the split the run needs). A plan records such a run as not run, with
    the message, and goes on: missing data is the report's business, not a fault."""


class FolderInUseError(DistillError):
    """Another process holds the run folder (its lock): a plan's worker skips such a run,
    which the other worker is running."""


def require_one_of(name: str, value, choices):
    """Raises DistillError unless `value` is one of `choices`."""
    if value not in choices:
        raise DistillError(f"{name} must be one of {tuple(choices)}, got {value!r}")
