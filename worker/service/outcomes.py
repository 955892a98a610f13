"""What applying an event ended in, when it did not raise."""

from enum import StrEnum


class Outcome(StrEnum):
    """Successful outcomes; failures are exceptions from `worker.errors`."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
