"""The worker queue's policy (delivery limit, at-least-once dead-lettering) as data, applied and checked.

Why a policy: a declared queue's arguments can never change, a policy can. Why these
values: a poison message that crashes the worker must not block the queue forever
(delivery limit), and messages the broker dead-letters must not be lost on the way
(at-least-once, which needs `reject-publish`). RabbitMQ 3.10 also counts channel closes
towards the limit, so a few worker restarts must not use it up: keep it at 20 or more.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import structlog

from worker.broker.management import ManagementClient, ManagementError
from worker.contract.names import DEAD_LETTER_QUEUE, WORKER_QUEUE
from worker.errors import StartupRefused
from worker.settings import Settings

log = structlog.get_logger(__name__)
# The management API refreshes a queue's effective policy every few seconds.
POLICY_WAIT_S = 15.0

MIN_DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class QueuePolicy:
    """A RabbitMQ policy as the management API takes it."""

    name: str
    pattern: str
    apply_to: str
    priority: int
    definition: dict[str, Any]

    def body(self) -> dict[str, Any]:
        """The management API's JSON for this policy."""
        return {
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "priority": self.priority,
            "definition": self.definition,
        }


WORKER_QUEUE_POLICY = QueuePolicy(
    name="llm-events-worker",
    pattern=f"^{re.escape(WORKER_QUEUE)}$",
    # `quorum_queues` exists only since RabbitMQ 3.12 (3.10 rejects it). `queues` is the same
    # here: the anchored pattern matches one queue, and it is a quorum queue.
    apply_to="queues",
    priority=10,
    definition={
        "delivery-limit": 20,
        "dead-letter-exchange": "",
        "dead-letter-routing-key": DEAD_LETTER_QUEUE,
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",
    },
)
assert WORKER_QUEUE_POLICY.definition["delivery-limit"] >= MIN_DELIVERY_LIMIT


@dataclass(frozen=True)
class PolicyStatus:
    """Whether the policy is defined and whether it is what the worker queue runs under."""

    defined: bool
    queue_exists: bool
    in_force: bool
    effective_policy: str | None = None
    mismatches: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Defined as expected, but no queue to apply to yet (it applies once declared)."""
        return self.defined and not self.queue_exists

    def describe(self) -> str:
        """One line for people: what is in force, or what is wrong."""
        name = WORKER_QUEUE_POLICY.name
        if self.in_force:
            return f"policy {name!r} is in force on {WORKER_QUEUE!r}"
        if self.pending:
            return f"policy {name!r} is defined; queue {WORKER_QUEUE!r} does not exist yet and gets it once declared"
        if not self.queue_exists:
            return f"policy {name!r} is not defined as expected and queue {WORKER_QUEUE!r} does not exist"
        if self.effective_policy is None:
            return f"queue {WORKER_QUEUE!r} runs without a policy; run `worker policy apply`"
        if self.effective_policy != name:
            return f"queue {WORKER_QUEUE!r} runs under policy {self.effective_policy!r}, not {name!r}"
        differences = ", ".join(
            f"{key}: expected {want!r}, effective {got!r}" for key, (want, got) in sorted(self.mismatches.items())
        )
        return f"queue {WORKER_QUEUE!r} runs under {name!r} but its effective definition differs ({differences})"


async def apply_policy(settings: Settings, policy: QueuePolicy = WORKER_QUEUE_POLICY) -> None:
    """Create or replace the policy in the worker's vhost (idempotent)."""
    async with ManagementClient.from_settings(settings) as api:
        await api.put_policy(policy.name, policy.body())


async def check_policy(settings: Settings, policy: QueuePolicy = WORKER_QUEUE_POLICY) -> PolicyStatus:
    """Read the policy and the worker queue's effective policy; never changes anything.

    A fresh policy takes a moment to reach a queue: poll this rather than expect it at once.
    """
    async with ManagementClient.from_settings(settings) as api:
        defined = _defined_as_expected(await api.get_policy(policy.name), policy.body())
        queue = await api.get_queue(WORKER_QUEUE)
    return _status(defined, queue, policy)


async def check_queue_policy(settings: Settings, policy: QueuePolicy = WORKER_QUEUE_POLICY) -> PolicyStatus:
    """Like `check_policy`, from the queue alone: needs only the `management` tag, not `policymaker`."""
    async with ManagementClient.from_settings(settings) as api:
        queue = await api.get_queue(WORKER_QUEUE)
    return _status(queue is not None and queue.get("policy") == policy.name, queue, policy)


def _status(defined: bool, queue: dict[str, Any] | None, policy: QueuePolicy) -> PolicyStatus:
    if queue is None:
        return PolicyStatus(defined=defined, queue_exists=False, in_force=False)
    effective_name = queue.get("policy") or None
    effective = queue.get("effective_policy_definition") or {}
    # Operator policies merge into the effective definition, so compare that, key by key.
    mismatches = {
        key: (want, effective.get(key)) for key, want in policy.definition.items() if effective.get(key) != want
    }
    in_force = effective_name == policy.name and not mismatches
    return PolicyStatus(defined, True, in_force, effective_name, mismatches)


def _defined_as_expected(record: dict[str, Any] | None, expected: dict[str, Any]) -> bool:
    return record is not None and all(record.get(key) == value for key, value in expected.items())


async def require_queue_policy(settings: Settings) -> None:
    """Refuse to run without the worker queue's policy: without a delivery limit a poison
    message loops forever, without at-least-once dead-lettering a crash loop can lose events."""
    deadline = asyncio.get_running_loop().time() + POLICY_WAIT_S
    while True:
        status = await check_queue_policy(settings)
        if status.in_force:
            log.info("queue_policy_in_force", policy=status.effective_policy)
            return
        if asyncio.get_running_loop().time() > deadline:
            raise StartupRefused(f"{status.describe()} (set WORKER_REQUIRE_QUEUE_POLICY=false to run without it)")
        # The management API refreshes a queue's effective policy every few seconds.
        await asyncio.sleep(1.0)


def management_unreachable(error: BaseException) -> str | None:
    """Why the management API gave no answer (worth waiting for), else None."""
    if isinstance(error, ManagementError) and not error.reached:
        return str(error)
    return None
