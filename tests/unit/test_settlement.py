"""Settlement: copies that can always be encoded, failures that requeue instead of escaping, one retry budget."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aio_pika
import pamqp.frame
import pytest
from pamqp.header import ContentHeader
from structlog.testing import capture_logs

from worker.broker import settlement
from worker.broker.publisher import PublishFailed
from worker.broker.settlement import RetrySchedules, Settler
from worker.contract.names import DEAD_LETTER_QUEUE, delay_queue_name
from worker.contract.reasons import Reason
from worker.errors import TransientError, UnknownUser


@dataclass(eq=False)
class FakeChannel:
    is_closed: bool = False
    sent: list[tuple[str, int]] = field(default_factory=list)


class FakeDelivery:
    """What settlement reads of a delivery (the attribute names of `worker.broker.delivery.Delivery`)."""

    def __init__(
        self, channel: FakeChannel, tag: int, headers: dict[str, Any] | None = None, **properties: Any
    ) -> None:
        self.channel, self.delivery_tag, self.redelivered, self.settled = channel, tag, False, False
        self.body, self.routing_key, self.headers = b"not json", "message.created", headers or {}
        self.content_type, self.content_encoding, self.delivery_mode = "application/cloudevents+json", None, 2
        self.priority = self.correlation_id = self.reply_to = self.timestamp = self.type = self.app_id = None
        self.message_id = f"evt-{tag}"
        for name, value in properties.items():
            setattr(self, name, value)

    async def ack(self, multiple: bool = False) -> None:
        self.channel.sent.append(("ack", self.delivery_tag))

    async def nack(self, requeue: bool = True) -> None:
        self.channel.sent.append(("nack-requeue" if requeue else "nack", self.delivery_tag))


class FakePublisher:
    """Writes each copy's content header the way aiormq would, then records it (or fails as told)."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.fail_with = fail_with
        self.published: list[tuple[str, aio_pika.Message]] = []

    async def publish(self, message: aio_pika.Message, routing_key: str, exchange: Any = None) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        pamqp.frame.marshal(ContentHeader(0, len(message.body), message.properties), 1)
        self.published.append((routing_key, message))


@pytest.fixture(autouse=True)
def no_requeue_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settlement, "REQUEUE_PAUSE_S", 0.0)


def settler_with(publisher: FakePublisher, transient: list[int], unknown_user: list[int]) -> Settler:
    return Settler(publisher, RetrySchedules(transient=transient, unknown_user=unknown_user))  # type: ignore[arg-type]


async def test_a_delivery_whose_headers_and_properties_pamqp_refuses_is_still_dead_lettered() -> None:
    channel, publisher = FakeChannel(), FakePublisher()
    settler = settler_with(publisher, [1], [1])
    delivery = FakeDelivery(
        channel, 1, headers={"x-origin": b"eu-\xff", "x-score": 1e300, "x-hops": [b"\xfe", 3]},
        delivery_mode=3, timestamp=datetime(1960, 1, 1), message_id=b"evt-\xff", priority=300,
    )
    settler.received(delivery)  # type: ignore[arg-type]

    outcome = await settler.dead_letter(delivery, Reason.INVALID_JSON, "body is not JSON", 1)  # type: ignore[arg-type]

    assert outcome == "dead_lettered" and channel.sent == [("ack", 1)]
    [(queue, copy)] = publisher.published
    assert queue == DEAD_LETTER_QUEUE and copy.body == b"not json"
    assert copy.headers["x-origin"] == bytearray(b"eu-\xff") and copy.headers["x-hops"] == [bytearray(b"\xfe"), 3]
    assert copy.headers["x-score"] == "unencodable:double:1e+300"
    assert (copy.delivery_mode, copy.timestamp, copy.message_id, copy.priority) == (2, None, None, 0)
    detail = copy.headers["x-error-detail"]
    assert detail.startswith("body is not JSON; header x-origin carried as a byte array")
    for changed in ("x-score", "x-hops[0]", "property delivery_mode", "property timestamp", "property message_id",
                    "property priority"):
        assert changed in detail
    assert "eu-" not in detail and "1e+300" not in detail and len(detail) <= 500


@pytest.mark.parametrize("error", [TypeError("x-origin error"), OverflowError("float too large"),
                                   RuntimeError("channel gone"), PublishFailed("no confirm within 10s")])
async def test_any_failure_to_publish_a_copy_requeues_the_delivery_instead_of_escaping(error: Exception) -> None:
    channel = FakeChannel()
    settler = settler_with(FakePublisher(fail_with=error), [1], [1])
    delivery = FakeDelivery(channel, 1)
    settler.received(delivery)  # type: ignore[arg-type]

    with capture_logs() as logs:
        outcome = await settler.dead_letter(
            delivery, Reason.INVALID_JSON, "body is not JSON", 1  # type: ignore[arg-type]
        )

    assert outcome == "requeued" and channel.sent == [("nack-requeue", 1)]
    [line] = [line for line in logs if line["event"] == "republish_failed"]
    assert line["error"] == type(error).__name__ and line["queue"] == DEAD_LETTER_QUEUE


async def test_a_copy_that_cannot_even_be_built_requeues_the_delivery() -> None:
    class Unreadable(dict):
        def items(self):  # noqa: ANN202 - a header table that fails when read
            raise ValueError("unreadable")

    channel, publisher = FakeChannel(), FakePublisher()
    settler = settler_with(publisher, [1], [1])
    delivery = FakeDelivery(channel, 1, headers=Unreadable(x=1))
    settler.received(delivery)  # type: ignore[arg-type]
    assert await settler.retry(delivery, TransientError("deadlock"), 1) == "requeued"  # type: ignore[arg-type]
    assert publisher.published == [] and channel.sent == [("nack-requeue", 1)]


async def settle_until_dead_lettered(settler: Settler, publisher: FakePublisher, errors: Any) -> list[str]:
    """Deliver the event again from each copy it was retried as, failing with the next error."""
    channel, headers, outcomes = FakeChannel(), {}, []
    for tag in range(1, 100):
        delivery = FakeDelivery(channel, tag, headers=headers)
        settler.received(delivery)  # type: ignore[arg-type]
        outcomes.append(await settler.retry(delivery, next(errors), tag))  # type: ignore[arg-type]
        if outcomes[-1] != "retried":
            return outcomes
        headers = publisher.published[-1][1].headers
    return outcomes


async def test_alternating_reasons_share_one_retry_budget() -> None:
    publisher = FakePublisher()
    settler = settler_with(publisher, [1, 5], [5, 30, 120])
    errors = itertools.cycle([UnknownUser(), TransientError("lock timeout")])

    outcomes = await settle_until_dead_lettered(settler, publisher, errors)

    assert outcomes == ["retried"] * 5 + ["dead_lettered"]
    assert [headers["x-retry-cycles"] for _, headers in _published_headers(publisher)[:5]] == [1, 2, 3, 4, 5]
    queue, dead = publisher.published[-1]
    assert queue == DEAD_LETTER_QUEUE
    # The sixth error was transient: the event is dead-lettered with the reason at hand.
    assert dead.headers["x-error-reason"] == "retries_exhausted"
    assert dead.headers["x-error-detail"] == "lock timeout; retry budget spent (5 delay-queue cycles in all)"


async def test_one_reason_after_the_other_still_gets_both_whole_schedules() -> None:
    publisher = FakePublisher()
    settler = settler_with(publisher, [1, 5], [5, 30, 120])
    errors = iter([TransientError("deadlock")] * 2 + [UnknownUser()] * 4)

    outcomes = await settle_until_dead_lettered(settler, publisher, errors)

    assert outcomes == ["retried"] * 5 + ["dead_lettered"]
    assert [queue for queue, _ in publisher.published[:5]] == [delay_queue_name(d) for d in (1, 5, 5, 30, 120)]
    dead = publisher.published[-1][1]
    assert dead.headers["x-error-reason"] == "unknown_user" and "budget" not in dead.headers["x-error-detail"]


async def test_a_forged_negative_cycle_count_buys_no_extra_retries() -> None:
    publisher = FakePublisher()
    settler = settler_with(publisher, [1], [1])
    delivery = FakeDelivery(FakeChannel(), 1, headers={"x-retry-cycles": -50, "x-retry-reason": "unknown_user",
                                                       "x-retry-step": 0})
    settler.received(delivery)  # type: ignore[arg-type]
    assert await settler.retry(delivery, TransientError("deadlock"), 1) == "retried"  # type: ignore[arg-type]
    assert publisher.published[-1][1].headers["x-retry-cycles"] == 1


def _published_headers(publisher: FakePublisher) -> list[tuple[str, dict[str, Any]]]:
    return [(queue, message.headers) for queue, message in publisher.published]
