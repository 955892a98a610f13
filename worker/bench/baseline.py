"""The broker on its own: the raw rate (the same payloads drained from a pre-filled quorum queue by a bare
consumer) and the raw latency floor (the same consumer fed at the worker's half-load rate)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from aio_pika.abc import AbstractConnection

from worker.bench.latency import Percentiles, latencies_ms, summarise
from worker.bench.publishing import PipelinedPublisher, publish_all
from worker.bench.workload import EventSpec, Workload
from worker.broker.publisher import open_publisher_channel
from worker.broker.topology import QUORUM
from worker.settings import Settings
from worker.testkit.child_env import settings_env

ACK_EVERY = 100
SUBSCRIBED = b"subscribed\n"
"""What the raw latency consumer prints once its consumer is registered."""


@dataclass(frozen=True)
class RawRate:
    """How fast one plain consumer takes the backlog: parse, then one multiple-ack per `ack_every`."""

    workload: str
    prefetch: int
    ack_every: int
    events: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def ack_interval(prefetch: int) -> int:
    """One multiple-ack per 100 deliveries, or per half the window when the prefetch is smaller:
    a consumer that waits for more deliveries than the broker may have in flight would wait forever."""
    return max(1, min(ACK_EVERY, prefetch // 2))


async def measure_raw_rate(
    connection: AbstractConnection,
    workload: Workload,
    specs: Sequence[EventSpec],
    prefetch: int,
    publish_window: int,
    timeout_s: float,
    progress: Callable[[str, int, int], None],
) -> RawRate:
    """Fill a fresh durable quorum queue with `specs`, then time the drain."""
    name = f"bench.raw.{uuid.uuid4().hex[:8]}"
    publish_channel = await open_publisher_channel(connection)
    queue = await publish_channel.declare_queue(name, durable=True, arguments=QUORUM)
    try:
        publisher = PipelinedPublisher(publish_channel, publish_window, timeout_s)
        await publish_all(publisher, workload, specs, None, routing_key=name,
                          progress=lambda n: progress("raw: publish", n, len(specs)))
        seconds = await asyncio.wait_for(drain(connection, name, len(specs), prefetch, progress), timeout_s * 10)
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await publish_channel.close()
    return RawRate(workload.name, prefetch, ack_interval(prefetch), len(specs), seconds)


async def measure_raw_latency(
    connection: AbstractConnection,
    settings: Settings,
    workload: Workload,
    specs: Sequence[EventSpec],
    prefix: str,
    prefetch: int,
    rate: float,
    publish_window: int,
    timeout_s: float,
) -> Percentiles | None:
    """Publish-to-delivery latency of the bare consumer while `specs` (ids `<prefix><n>`) are published at `rate`.

    The same publisher, payloads, rate and kind of queue as the worker's half-load phase,
    and the raw consumer in a process of its own, as the worker is, with nothing behind it:
    what the broker and the load generator alone give on this machine, the floor under the
    worker's publish-to-commit latency at that load.
    """
    name = f"bench.raw-latency.{uuid.uuid4().hex[:8]}"
    publish_channel = await open_publisher_channel(connection)
    queue = await publish_channel.declare_queue(name, durable=True, arguments=QUORUM)
    with tempfile.TemporaryDirectory(prefix="bench-raw-latency-") as scratch:
        output = Path(scratch) / "delivered.json"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker.bench.raw_latency_consumer", name, str(len(specs)), str(prefetch),
            str(output), env=settings_env(settings), stdout=asyncio.subprocess.PIPE)
        try:
            # Publishing before the consumer is subscribed would count its start-up in the first latencies.
            line = await asyncio.wait_for(child.stdout.readline(), timeout_s)  # type: ignore[union-attr]
            if line != SUBSCRIBED:
                raise RuntimeError(f"the raw latency consumer did not subscribe (it wrote {line[:80]!r})")
            publisher = PipelinedPublisher(publish_channel, publish_window, timeout_s)
            published = await publish_all(publisher, workload, specs, None, routing_key=name, rate=rate)
            if await asyncio.wait_for(child.wait(), timeout_s * 10) != 0:
                raise RuntimeError(f"the raw latency consumer failed (exit code {child.returncode})")
            delivered = orjson.loads(output.read_bytes())
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
            await queue.delete(if_unused=False, if_empty=False)
            await publish_channel.close()
    return summarise(latencies_ms(prefix, published, delivered))


async def drain(
    connection: AbstractConnection,
    name: str,
    count: int,
    prefetch: int,
    progress: Callable[[str, int, int], None] | None,
    delivered: dict[str, float] | None = None,
    subscribed: asyncio.Event | None = None,
) -> float:
    """Consume `count` messages (parse, multiple-ack); record each one's arrival by message id if asked."""
    channel = await connection.channel()
    try:
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(name)
        every = ack_interval(prefetch)
        received = 0
        started = time.monotonic()
        async with queue.iterator() as deliveries:
            if subscribed is not None:
                subscribed.set()
            async for message in deliveries:
                orjson.loads(message.body)
                if delivered is not None:
                    delivered[str(message.message_id)] = time.time()
                received += 1
                if received % every == 0 or received == count:
                    await message.ack(multiple=True)
                if progress is not None and received % 1000 == 0 and received < count:
                    progress("raw: drain", received, count)
                if received == count:
                    break
        seconds = time.monotonic() - started
        if progress is not None:
            progress("raw: drain", received, count)
        return seconds
    finally:
        await channel.close()
