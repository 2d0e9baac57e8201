"""Errors raised for bad user input.

`InputError` is what the command line turns into one line on stderr and exit code 2.
"""


class InputError(ValueError):
    """Bad user input: a config key, a value, a file or a combination.

    Attributes:
        key: dotted config key or file path the problem is about ("" if none).
        message: what is wrong and what is expected.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)
