"""Composition root: wires settings into engine, broker, consumer; runs until a stop signal."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from worker.broker.consumer import Consumer
from worker.broker.publisher import ConfirmedPublisher, open_publisher_channel
from worker.broker.settlement import RetrySchedules, Settler
from worker.broker.topology import declare_topology
from worker.contract.decoding import Limits
from worker.db.engine import create_engine, create_session_factory
from worker.db.failures import sqlstate_of
from worker.db.inbox_partitions import maintain_partitions
from worker.db.unit_of_work import UnitOfWork
from worker.runtime.gate import DependencyGate
from worker.service.applier import EventApplier
from worker.settings import Settings

log = structlog.get_logger(__name__)


def amqp_url(settings: Settings, connection_name: str) -> str:
    """The broker URL with a connection name and the heartbeat, unless the URL sets them."""
    url = URL(settings.amqp_url)
    extra = {"name": connection_name, "heartbeat": str(settings.heartbeat_s)}
    return str(url.update_query({k: v for k, v in extra.items() if k not in url.query}))


async def connect_broker(settings: Settings, connection_name: str) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(amqp_url(settings, connection_name))


async def ensure_inbox_partitions(engine: AsyncEngine, settings: Settings, *, drop_expired: bool) -> None:
    """Create the coming days' inbox partitions (and drop expired ones when asked)."""
    async with engine.begin() as conn:
        report = await maintain_partitions(
            conn,
            today=datetime.now(UTC).date(),
            days_ahead=settings.inbox_days_ahead,
            retention_days=settings.inbox_retention_days if drop_expired else None,
        )
    if report.created or report.dropped:
        log.info("inbox_partitions_maintained", created=report.created, dropped=report.dropped)
    if report.failed:
        log.error("inbox_partitions_blocked_by_default_rows", partitions=report.failed)


async def _try_inbox_partitions(engine: AsyncEngine, settings: Settings) -> None:
    """Best effort at start-up: a least-privilege worker role cannot create tables, and the
    daily `worker inbox maintain` job (as the owner) is what keeps partitions ahead."""
    try:
        await ensure_inbox_partitions(engine, settings, drop_expired=False)
    except DBAPIError as exc:
        if sqlstate_of(exc) != "42501":
            raise
        log.info("inbox_partitions_left_to_maintenance_job", reason="no privilege to create partitions")


@dataclass
class Worker:
    """A running worker: what `run_worker` builds and tears down."""

    engine: AsyncEngine
    connection: AbstractRobustConnection
    consumer: Consumer
    gate: DependencyGate


async def start_worker(settings: Settings) -> Worker:
    """Connect, declare the topology and start consuming."""
    engine = create_engine(settings)
    try:
        await _try_inbox_partitions(engine, settings)
        session_factory = create_session_factory(engine)

        async def probe() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        gate = DependencyGate(probe, settings.outage_probe_interval_s)
        applier = EventApplier(
            lambda: UnitOfWork(session_factory), gate, settings.retry_in_place, settings.retry_backoff_ms
        )
        connection = await connect_broker(settings, "llm-persistence-worker")
    except BaseException:
        await engine.dispose()
        raise
    try:
        schedules = RetrySchedules(transient=settings.retry_delays_s, unknown_user=settings.unknown_user_delays_s)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=settings.prefetch)
        topology = await declare_topology(channel, schedules.all_delays())
        publisher = ConfirmedPublisher(await open_publisher_channel(connection), settings.publish_timeout_s)
        limits = Limits(settings.max_body_bytes, settings.max_content_bytes)
        consumer = Consumer(channel, topology.worker_queue, applier, Settler(publisher, schedules), limits)
        gate.on_change(consumer.on_gate_change)
        await consumer.start()
    except BaseException:
        await connection.close()
        await engine.dispose()
        raise
    return Worker(engine, connection, consumer, gate)


async def stop_worker(worker: Worker, settings: Settings) -> None:
    """Drain in-flight deliveries within the shutdown timeout, then close everything."""
    left = await worker.consumer.drain(settings.shutdown_timeout_s)
    if left:
        log.warning("shutdown_left_unacknowledged", deliveries=left)
    await worker.gate.stop()
    await worker.connection.close()
    await worker.engine.dispose()


async def run_worker(settings: Settings) -> int:
    """Consume until SIGTERM or SIGINT; exit code 0 after a clean drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = await start_worker(settings)
    log.info("worker_started", prefetch=settings.prefetch, pool_size=settings.db_pool_size)
    await stop.wait()
    log.info("worker_stopping", in_flight=worker.consumer.in_flight)
    await stop_worker(worker, settings)
    log.info("worker_stopped")
    return 0
