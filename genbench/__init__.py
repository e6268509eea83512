"""genbench: a reproducibility benchmark suite for generative models."""

__version__ = "0.1.0"


class GenbenchError(Exception):
    """An error the user can fix: the message names the cause and what to do.

    The CLI prints it as one line and exits non-zero, without a traceback.
    """
