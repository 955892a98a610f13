"""A multiple-ack covers a batch only when it settles exactly that batch."""

from __future__ import annotations

from dataclasses import dataclass

from worker.broker.acks import AckWindow


class FakeChannel:
    is_closed = False


@dataclass(eq=False)
class FakeDelivery:
    channel: FakeChannel
    delivery_tag: int


def deliveries(channel: FakeChannel, tags: range) -> list[FakeDelivery]:
    return [FakeDelivery(channel, tag) for tag in tags]


def test_a_contiguous_batch_from_the_lowest_unsettled_tag_is_covered() -> None:
    window, channel = AckWindow(), FakeChannel()
    batch = deliveries(channel, range(1, 9))
    for d in batch:
        window.received(d)
    assert window.multiple_ack_covers_exactly(batch)


def test_an_unsettled_lower_tag_of_another_batch_prevents_the_multiple_ack() -> None:
    window, channel = AckWindow(), FakeChannel()
    first, second = deliveries(channel, range(1, 5)), deliveries(channel, range(5, 9))
    for d in first + second:
        window.received(d)
    assert not window.multiple_ack_covers_exactly(second)
    for d in first:
        window.settled(d)
    assert window.multiple_ack_covers_exactly(second)


def test_a_tag_not_yet_received_here_prevents_the_multiple_ack() -> None:
    # aiormq hands deliveries over in separate tasks: tag 3 may arrive after tag 4.
    window, channel = AckWindow(), FakeChannel()
    early = [FakeDelivery(channel, t) for t in (1, 2, 4)]
    for d in early:
        window.received(d)
    assert not window.multiple_ack_covers_exactly(early)
    window.received(FakeDelivery(channel, 3))
    assert not window.multiple_ack_covers_exactly(early)


def test_deliveries_of_a_new_channel_start_afresh() -> None:
    window, old, new = AckWindow(), FakeChannel(), FakeChannel()
    for d in deliveries(old, range(1, 4)):
        window.received(d)
    old.is_closed = True
    fresh = deliveries(new, range(1, 3))
    for d in fresh:
        window.received(d)
    assert window.multiple_ack_covers_exactly(fresh)
