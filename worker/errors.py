"""Exceptions that carry intent; `worker.broker.settlement` turns each into ack, retry or dead-letter."""

from __future__ import annotations

from worker.contract.reasons import Reason


class EventRejected(Exception):
    """The event can never be applied: dead-letter it at once with this reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RetryLater(Exception):
    """The event may apply later (unknown user, lock timeout, deadlock): retry on a schedule."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class UnknownUser(RetryLater):
    """`user_id` is not (yet) in `users`."""

    def __init__(self, detail: str = "user_id is not in users") -> None:
        super().__init__(Reason.UNKNOWN_USER, detail)


class TransientError(RetryLater):
    """A database error that another attempt may not hit (deadlock, timeout, serialization)."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.RETRIES_EXHAUSTED, detail)


class Outage(Exception):
    """A dependency is down or unusable for every event: pause, settle nothing, resume later."""


class StartupRefused(Exception):
    """The process cannot start with this configuration, and waiting will not help (`worker run` exits)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
