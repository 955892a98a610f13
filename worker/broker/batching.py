"""Groups received deliveries into batches, by count and by bytes, and holds the reader back when full.

No broker here: deliveries are anything with `body` and `redelivered`, so the policy is
tested without one.

A delivery the broker marks as redelivered is a batch of its own, so a message that kills
the worker cannot drag healthy neighbours towards the queue's delivery limit.

An under-filled batch waits for company only while another batch is being applied (the
database is busy with it anyway), and at most the batch wait: an idle worker applies what
it has at once, so light load costs no added latency and heavy load still fills batches.

Memory is bounded by bytes, not only by the prefetch count: a batch closes at its size or
its byte cap, and once the message bytes held exceed the in-flight budget, `add` returns
an awaitable that the channel's reader awaits (and with it the socket: see
`worker.broker.inline`) until finished batches make room. No delivery is refused for its size.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Received(Protocol):
    body: bytes
    redelivered: bool


@dataclass(frozen=True)
class Batching:
    """How deliveries are grouped into transactions."""

    size: int = 1
    wait_s: float = 0.005
    concurrency: int = 4
    max_bytes: int = 16 * 1024 * 1024
    """A batch closes before its message bodies exceed this (it always holds at least one)."""


@dataclass(frozen=True)
class FlowControl:
    """How many message bytes one process holds before it stops reading from the broker."""

    max_in_flight_bytes: int = 128 * 1024 * 1024


class BatchAssembler:
    """Buffers deliveries until a batch worker takes them; counts what is held until each batch is finished."""

    def __init__(
        self,
        batching: Batching,
        flow: FlowControl | None = None,
        on_paused: Callable[[float], Any] | None = None,
    ) -> None:
        self.batching = batching
        self.flow = flow or FlowControl()
        self._on_paused = on_paused or (lambda seconds: None)
        self._buffer: deque[Received] = deque()
        self._buffer_bytes = 0
        self._solo: deque[Received] = deque()
        self._busy = 0
        """Deliveries in batches being applied (0: no batch is)."""
        self._bytes = 0
        """Body bytes of every delivery added and not yet finished."""
        self._changed = asyncio.Event()
        """Set when a delivery arrives or a batch finishes: what an idle or lingering batch worker waits for."""
        self._room = asyncio.Event()
        self._room.set()

    @property
    def in_flight(self) -> int:
        """Deliveries added and not yet finished."""
        return len(self._buffer) + len(self._solo) + self._busy

    @property
    def in_flight_bytes(self) -> int:
        return self._bytes

    def add(self, delivery: Received) -> Awaitable[None] | None:
        """File a delivery; over the byte budget, return what the reader must await before reading on."""
        size = len(delivery.body)
        self._bytes += size
        if delivery.redelivered:
            self._solo.append(delivery)
        else:
            self._buffer.append(delivery)
            self._buffer_bytes += size
        self._changed.set()
        if self._bytes > self.flow.max_in_flight_bytes:
            self._room.clear()
            return self._wait_for_room()
        return None

    async def next_batch(self) -> list[Any]:
        """The next batch to apply (it counts as busy until `finished`)."""
        while True:
            while not self._buffer and not self._solo:
                self._changed.clear()
                await self._changed.wait()
            if self._solo:
                batch = [self._solo.popleft()]
            else:
                if self._busy and self.batching.wait_s > 0 and not self._full_batch_buffered():
                    try:
                        await asyncio.wait_for(self._linger(), self.batching.wait_s)
                    except TimeoutError:
                        pass
                batch = self._take()
                if not batch:
                    continue  # another batch worker took them while this one lingered
            self._busy += len(batch)
            return batch

    def finished(self, batch: list[Any]) -> None:
        """The batch is settled (or given up): its deliveries no longer count."""
        self._busy -= len(batch)
        self._bytes -= sum(len(d.body) for d in batch)
        if self._bytes <= self.flow.max_in_flight_bytes:
            self._room.set()
        self._changed.set()

    async def _wait_for_room(self) -> None:
        started = time.perf_counter()
        try:
            await self._room.wait()
        finally:
            self._on_paused(time.perf_counter() - started)

    async def _linger(self) -> None:
        """Until the buffer holds a full batch or no other batch is being applied."""
        while self._busy and not self._full_batch_buffered():
            self._changed.clear()
            await self._changed.wait()

    def _full_batch_buffered(self) -> bool:
        return len(self._buffer) >= self.batching.size or self._buffer_bytes >= self.batching.max_bytes

    def _take(self) -> list[Received]:
        taken: list[Received] = []
        taken_bytes = 0
        while self._buffer and len(taken) < self.batching.size:
            size = len(self._buffer[0].body)
            if taken and taken_bytes + size > self.batching.max_bytes:
                break
            taken.append(self._buffer.popleft())
            taken_bytes += size
        self._buffer_bytes -= taken_bytes
        return taken
