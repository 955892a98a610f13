"""How received deliveries become batches, and when the reader is held back (no broker: deliveries by hand)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from worker.broker.batching import BatchAssembler, Batching, FlowControl


def _assembler(size: int, wait_s: float, max_bytes: int = 1 << 30, budget: int = 1 << 30) -> BatchAssembler:
    return BatchAssembler(Batching(size=size, wait_s=wait_s, concurrency=2, max_bytes=max_bytes), FlowControl(budget))


def _delivery(size: int = 10, redelivered: bool = False) -> Any:
    return SimpleNamespace(body=b"x" * size, redelivered=redelivered)


def _fill(assembler: BatchAssembler, count: int, size: int = 10) -> list[Any]:
    deliveries = [_delivery(size) for _ in range(count)]
    for delivery in deliveries:
        assert assembler.add(delivery) is None
    return deliveries


async def _take(assembler: BatchAssembler) -> list[Any]:
    return await asyncio.wait_for(assembler.next_batch(), 5.0)


async def _busy(assembler: BatchAssembler) -> list[Any]:
    """Another batch being applied: one delivery taken and not finished."""
    return await _take(assembler) if _fill(assembler, 1) else []


async def _lingering(assembler: BatchAssembler) -> asyncio.Task:
    """Start taking a batch and check that it is still waiting for company a moment later."""
    taking = asyncio.create_task(assembler.next_batch())
    await asyncio.sleep(0.1)
    assert not taking.done()
    return taking


async def test_an_idle_worker_applies_an_under_filled_batch_at_once() -> None:
    assembler = _assembler(size=128, wait_s=30.0)
    deliveries = _fill(assembler, 3)
    # Nothing else is being applied: no reason to wait the 30 s for company.
    assert await _take(assembler) == deliveries


async def test_while_another_batch_is_applied_an_under_filled_batch_waits_for_company() -> None:
    assembler = _assembler(size=5, wait_s=30.0)
    await _busy(assembler)
    first = _fill(assembler, 3)
    taking = await _lingering(assembler)
    rest = _fill(assembler, 4)
    assert await asyncio.wait_for(taking, 5.0) == first + rest[:2]  # full: it goes as soon as it fills
    assert assembler.in_flight == 1 + 5 + 2


async def test_a_lingering_batch_goes_when_the_other_batch_is_done() -> None:
    assembler = _assembler(size=128, wait_s=30.0)
    other = await _busy(assembler)
    deliveries = _fill(assembler, 3)
    taking = await _lingering(assembler)
    assembler.finished(other)
    assert await asyncio.wait_for(taking, 5.0) == deliveries


async def test_the_batch_wait_bounds_the_lingering() -> None:
    assembler = _assembler(size=128, wait_s=0.05)
    await _busy(assembler)
    deliveries = _fill(assembler, 3)
    assert await _take(assembler) == deliveries


async def test_per_event_mode_never_waits() -> None:
    assembler = _assembler(size=1, wait_s=30.0)
    await _busy(assembler)
    deliveries = _fill(assembler, 2)
    assert await _take(assembler) == deliveries[:1]


async def test_a_redelivered_delivery_is_a_batch_of_its_own_before_the_others() -> None:
    assembler = _assembler(size=128, wait_s=0.0)
    first = _fill(assembler, 2)
    redelivered = _delivery(redelivered=True)
    assembler.add(redelivered)
    assert await _take(assembler) == [redelivered]
    assert await _take(assembler) == first


async def test_a_batch_closes_at_its_byte_cap_before_its_count() -> None:
    assembler = _assembler(size=128, wait_s=30.0, max_bytes=1000)
    deliveries = _fill(assembler, 5, size=400)
    for expected in (deliveries[:2], deliveries[2:4], deliveries[4:]):
        batch = await _take(assembler)
        assert batch == expected
        assembler.finished(batch)


async def test_a_delivery_larger_than_the_byte_cap_is_a_batch_of_its_own() -> None:
    assembler = _assembler(size=128, wait_s=30.0, max_bytes=100)
    deliveries = _fill(assembler, 2, size=400)
    assert await _take(assembler) == deliveries[:1]
    assert await _take(assembler) == deliveries[1:]


async def test_a_batch_worker_stops_lingering_once_the_buffered_bytes_fill_a_batch() -> None:
    assembler = _assembler(size=128, wait_s=30.0, max_bytes=1000)
    await _busy(assembler)
    first = _fill(assembler, 1, size=400)
    taking = await _lingering(assembler)
    more = _fill(assembler, 2, size=400)
    assert await asyncio.wait_for(taking, 5.0) == first + more[:1]


async def test_over_the_byte_budget_the_reader_waits_until_a_finished_batch_makes_room() -> None:
    assembler = _assembler(size=2, wait_s=0.0, budget=1000)
    _fill(assembler, 2, size=400)
    waiter = assembler.add(_delivery(400))
    assert waiter is not None and assembler.in_flight_bytes == 1200
    waiting = asyncio.ensure_future(waiter)
    batch = await _take(assembler)
    await asyncio.sleep(0.05)
    assert not waiting.done()  # taken is not finished: the bytes are still held
    assembler.finished(batch)
    await asyncio.wait_for(waiting, 5.0)
    assert assembler.in_flight_bytes == 400 and assembler.in_flight == 1
