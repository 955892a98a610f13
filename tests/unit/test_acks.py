"""Acknowledgements: one multiple-ack per settled prefix, never one that settles too much."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.broker.acks import AckWindow


@dataclass(eq=False)
class FakeChannel:
    is_closed: bool = False
    sent: list[tuple[str, int, bool]] = field(default_factory=list)


class FakeDelivery:
    def __init__(self, channel: FakeChannel, delivery_tag: int) -> None:
        self._channel = channel
        self.delivery_tag = delivery_tag
        self.settled = False

    @property
    def channel(self) -> FakeChannel:
        # Like aio-pika: a closed channel cannot be reached through its deliveries.
        if self._channel.is_closed:
            raise RuntimeError("channel closed")
        return self._channel

    async def ack(self, multiple: bool = False) -> None:
        self._channel.sent.append(("ack", self.delivery_tag, multiple))

    async def nack(self, requeue: bool = True) -> None:
        self._channel.sent.append(("nack", self.delivery_tag, False))


def received(window: AckWindow, channel: FakeChannel, tags) -> dict[int, FakeDelivery]:
    deliveries = {tag: FakeDelivery(channel, tag) for tag in tags}
    for delivery in deliveries.values():
        window.received(delivery)
    return deliveries


async def test_a_settled_prefix_is_acknowledged_with_one_multiple_ack() -> None:
    window, channel = AckWindow(), FakeChannel()
    d = received(window, channel, range(1, 9))
    await window.ack([d[t] for t in range(1, 9)])
    assert channel.sent == [("ack", 8, True)]


async def test_a_later_batch_waits_for_the_lower_one() -> None:
    window, channel = AckWindow(), FakeChannel()
    d = received(window, channel, range(1, 9))
    await window.ack([d[t] for t in range(5, 9)])
    assert channel.sent == []
    await window.ack([d[t] for t in range(1, 5)])
    assert channel.sent == [("ack", 8, True)]


async def test_a_tag_not_yet_received_here_is_never_covered() -> None:
    # aiormq hands deliveries over in separate tasks: tag 3 may arrive after tag 4.
    window, channel = AckWindow(), FakeChannel()
    d = received(window, channel, (1, 2, 4))
    await window.ack([d[1], d[2], d[4]])
    assert channel.sent == [("ack", 2, True)]
    d |= received(window, channel, (3,))
    await window.ack([d[3]])
    assert channel.sent[-1] == ("ack", 4, True)


async def test_a_nacked_delivery_is_never_the_tag_of_a_multiple_ack() -> None:
    window, channel = AckWindow(), FakeChannel()
    d = received(window, channel, range(1, 4))
    await window.ack([d[1], d[2]])
    await window.settle_alone(d[3], requeue=True)
    assert channel.sent == [("ack", 2, True), ("nack", 3, False)]
    d |= received(window, channel, (4,))
    await window.ack([d[4]])
    assert channel.sent[-1] == ("ack", 4, True)


async def test_deliveries_held_back_too_long_are_acknowledged_alone() -> None:
    window, channel = AckWindow(hold_limit=3), FakeChannel()
    d = received(window, channel, range(1, 7))
    await window.ack([d[t] for t in range(2, 6)])
    assert channel.sent == [("ack", t, False) for t in range(2, 6)]
    await window.ack([d[1], d[6]])
    assert channel.sent[-1] == ("ack", 6, True)


async def test_a_closed_channel_drops_acknowledgements() -> None:
    window, channel = AckWindow(), FakeChannel()
    d = received(window, channel, (1,))
    channel.is_closed = True
    assert await window.ack([d[1]]) == set()
    assert channel.sent == []


async def test_a_delivery_acknowledged_once_is_never_settled_again() -> None:
    window, channel = AckWindow(), FakeChannel()
    d = received(window, channel, [1, 2])
    await window.ack([d[1]])
    await window.ack([d[1]])
    await window.settle_alone(d[1], requeue=True)
    await window.settle_alone(d[2], requeue=True)
    await window.settle_alone(d[2], requeue=True)
    assert channel.sent == [("ack", 1, True), ("nack", 2, False)]
