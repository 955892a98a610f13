"""How the consumer groups buffered deliveries into batches (no broker: the buffer is filled by hand)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from worker.broker.consumer import Batching, Consumer
from worker.observability.metrics import Metrics


def _consumer(size: int, wait_s: float, max_bytes: int = 1 << 30) -> Consumer:
    channel = SimpleNamespace()  # no reopen callbacks: nothing is subscribed in these tests
    return Consumer(channel, SimpleNamespace(name="q"), None, None, None, Metrics(),  # type: ignore[arg-type]
                    Batching(size=size, wait_s=wait_s, concurrency=2, max_bytes=max_bytes))


def _fill(consumer: Consumer, count: int, size: int = 10) -> list[Any]:
    deliveries = [SimpleNamespace(body=b"x" * size) for _ in range(count)]
    consumer._buffer.extend(deliveries)  # noqa: SLF001 - the buffer is the policy's input
    consumer._buffer_bytes += count * size
    consumer._changed.set()
    return deliveries


async def _lingering(consumer: Consumer) -> asyncio.Task:
    """Start taking a batch and check that it is still waiting for company a moment later."""
    taking = asyncio.create_task(consumer._next_batch())
    await asyncio.sleep(0.1)
    assert not taking.done()
    return taking


async def test_an_idle_worker_applies_an_under_filled_batch_at_once() -> None:
    consumer = _consumer(size=128, wait_s=30.0)
    deliveries = _fill(consumer, 3)
    # Nothing else is being applied: no reason to wait the 30 s for company.
    assert await asyncio.wait_for(consumer._next_batch(), 5.0) == deliveries


async def test_while_another_batch_is_applied_an_under_filled_batch_waits_for_company() -> None:
    consumer = _consumer(size=5, wait_s=30.0)
    consumer._busy = 1
    first = _fill(consumer, 3)
    taking = await _lingering(consumer)
    rest = _fill(consumer, 4)
    assert await asyncio.wait_for(taking, 5.0) == first + rest[:2]  # full: it goes as soon as it fills
    assert list(consumer._buffer) == rest[2:]


async def test_a_lingering_batch_goes_when_the_other_batch_is_done() -> None:
    consumer = _consumer(size=128, wait_s=30.0)
    consumer._busy = 1
    deliveries = _fill(consumer, 3)
    taking = await _lingering(consumer)
    consumer._busy = 0
    consumer._changed.set()
    assert await asyncio.wait_for(taking, 5.0) == deliveries


async def test_the_batch_wait_bounds_the_lingering() -> None:
    consumer = _consumer(size=128, wait_s=0.05)
    consumer._busy = 1
    deliveries = _fill(consumer, 3)
    assert await asyncio.wait_for(consumer._next_batch(), 5.0) == deliveries


async def test_per_event_mode_never_waits() -> None:
    consumer = _consumer(size=1, wait_s=30.0)
    consumer._busy = 5
    deliveries = _fill(consumer, 2)
    assert await asyncio.wait_for(consumer._next_batch(), 5.0) == deliveries[:1]


async def test_a_batch_closes_at_its_byte_cap_before_its_count() -> None:
    consumer = _consumer(size=128, wait_s=30.0, max_bytes=1000)
    deliveries = _fill(consumer, 5, size=400)
    assert await asyncio.wait_for(consumer._next_batch(), 5.0) == deliveries[:2]
    assert await asyncio.wait_for(consumer._next_batch(), 5.0) == deliveries[2:4]
    assert await asyncio.wait_for(consumer._next_batch(), 5.0) == deliveries[4:]


async def test_a_delivery_larger_than_the_byte_cap_is_a_batch_of_its_own() -> None:
    consumer = _consumer(size=128, wait_s=30.0, max_bytes=100)
    deliveries = _fill(consumer, 2, size=400)
    assert await asyncio.wait_for(consumer._next_batch(), 5.0) == deliveries[:1]
    assert await asyncio.wait_for(consumer._next_batch(), 5.0) == deliveries[1:]


async def test_a_batch_worker_stops_lingering_once_the_buffered_bytes_fill_a_batch() -> None:
    consumer = _consumer(size=128, wait_s=30.0, max_bytes=1000)
    consumer._busy = 1  # another batch is being applied: under-filled batches wait for company
    first = _fill(consumer, 1, size=400)
    taking = await _lingering(consumer)
    more = _fill(consumer, 2, size=400)
    assert await asyncio.wait_for(taking, 5.0) == first + more[:1]
