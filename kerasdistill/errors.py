"""The one exception type users see for bad input."""


class DistillError(ValueError):
    """A problem with the user's input (flags, data, configuration).

    Entry points catch it and print its message alone, without a traceback:
    the message must say what is wrong and how to fix it.
    """


def require_one_of(name: str, value, choices):
    """Raises DistillError unless `value` is one of `choices`."""
    if value not in choices:
        raise DistillError(f"{name} must be one of {tuple(choices)}, got {value!r}")
