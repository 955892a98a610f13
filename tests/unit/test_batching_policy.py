"""How the consumer groups buffered deliveries into batches (no broker: the buffer is filled by hand)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from worker.broker.consumer import Batching, Consumer
from worker.observability.metrics import Metrics


def _consumer(size: int, wait_s: float) -> Consumer:
    channel = SimpleNamespace()  # no reopen callbacks: nothing is subscribed in these tests
    return Consumer(channel, SimpleNamespace(name="q"), None, None, None, Metrics(),  # type: ignore[arg-type]
                    Batching(size=size, wait_s=wait_s, concurrency=2))


def _fill(consumer: Consumer, count: int) -> list[Any]:
    deliveries = [object() for _ in range(count)]
    consumer._buffer.extend(deliveries)  # noqa: SLF001 - the buffer is the policy's input
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
