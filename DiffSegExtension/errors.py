"""The one exception type the engine raises for bad input.

Every message names the problem and the fix; the CLI prints it as a single line and exits 2.
"""


class DiffSegInputError(ValueError):
    """Bad user input: a missing or unreadable file, a wrong shape, an inconsistent model, ..."""
