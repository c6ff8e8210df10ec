"""The one exception type users see for bad input."""


class DistillError(ValueError):
    """A problem with the user's input (flags, data, configuration).

    Entry points catch it and print its message alone, without a traceback:
    the message must say what is wrong and how to fix it.
    """
