"""Composition root: wires settings into engine, broker, consumer and HTTP; runs until a stop signal."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field

import structlog
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.broker.batching import Batching, FlowControl
from worker.broker.connection import broker_unreachable, connect_broker
from worker.broker.consumer import Consumer
from worker.broker.policy import management_unreachable, require_queue_policy
from worker.broker.publisher import ConfirmedPublisher, open_publisher_channel
from worker.broker.settlement import RetrySchedules, Settler
from worker.broker.topology import declare_topology
from worker.contract.decoding import Limits
from worker.contract.names import EXCHANGE
from worker.db.engine import create_engine
from worker.db.failures import classify, database_unreachable
from worker.db.inbox_partitions import try_inbox_partitions
from worker.db.migrations import wait_for_schema
from worker.db.outbox import OutboxStore
from worker.db.unit_of_work import UnitOfWork
from worker.errors import StartupRefused
from worker.observability.health import Health
from worker.observability.http import build_app, serve
from worker.observability.metrics import Metrics
from worker.runtime.gate import DependencyGate
from worker.runtime.heap import freeze_heap
from worker.runtime.relay import OutboxRelay
from worker.runtime.startup import EXIT_CONFIG, EXIT_CONSUMER_NOT_RESTORED, EXIT_OK, until_reachable
from worker.runtime.watchdog import ConsumerWatchdog
from worker.service.applier import EventApplier
from worker.service.budgets import Budgets
from worker.service.event_types import EVENT_TYPES
from worker.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class Worker:
    """A running worker: what `start_worker` builds and `stop_worker` tears down."""

    settings: Settings
    engine: AsyncEngine
    connection: AbstractRobustConnection
    """The consuming connection; its reader pauses under backpressure."""
    publisher_connection: AbstractRobustConnection
    """Dead-letter and retry copies, on a connection of their own: their confirms must be read
    while the consuming connection is paused (and RabbitMQ throttles publishers per connection)."""
    consumer: Consumer
    gate: DependencyGate
    metrics: Metrics
    health: Health
    relay: OutboxRelay | None = None
    draining: bool = False
    http: web.AppRunner | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)


async def start_worker(settings: Settings, metrics: Metrics | None = None) -> Worker:
    """Serve HTTP (live, not yet ready), wait for the schema, connect, declare the topology, consume."""
    metrics = metrics or Metrics()
    health = Health()
    health.liveness["event_loop"] = lambda: True
    schema = {"at_head": False}
    health.readiness["schema_at_head"] = lambda: schema["at_head"]
    health.readiness["started"] = lambda: False
    http = await serve(build_app(health, metrics), settings.http_port) if settings.http_port else None
    try:
        return await _start(settings, metrics, health, http, schema)
    except BaseException:
        if http is not None:
            await http.cleanup()
        raise


async def _start(
    settings: Settings, metrics: Metrics, health: Health, http: web.AppRunner | None, schema: dict[str, bool]
) -> Worker:
    engine = create_engine(settings)
    try:
        await until_reachable("database", lambda: wait_for_schema(engine), database_unreachable)
        schema["at_head"] = True
        await try_inbox_partitions(engine, settings)

        async def probe() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        gate = DependencyGate(probe, settings.outage_probe_interval_s)
        gate.on_change(lambda is_open: _count_outage(metrics, is_open))
        budget_telemetry = BudgetTelemetry(metrics)
        applier = EventApplier(
            lambda: UnitOfWork(engine),
            EVENT_TYPES,
            gate,
            classify,
            settings.retry_in_place,
            settings.retry_backoff_ms,
            on_batch=metrics.batch_size.observe,
            budgets=Budgets(
                {tier: tuple(percents) for tier, percents in settings.quota_thresholds.items()},
                settings.event_source,
                budget_telemetry,
                announce=settings.quota_events,
            ),
        )
        connection = await until_reachable(
            "broker", lambda: connect_broker(settings, "llm-persistence-worker"), broker_unreachable
        )
    except BaseException:
        await engine.dispose()
        raise
    publisher_connection: AbstractRobustConnection | None = None
    try:
        connection.reconnect_callbacks.add(lambda *_: metrics.broker_reconnects.inc())
        schedules = RetrySchedules(transient=settings.retry_delays_s, unknown_user=settings.unknown_user_delays_s)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=settings.prefetch)
        topology = await declare_topology(channel, schedules.all_delays())
        if settings.require_queue_policy:
            await until_reachable("broker management API", lambda: require_queue_policy(settings),
                                  management_unreachable)
        publisher_connection = await until_reachable(
            "broker", lambda: connect_broker(settings, "llm-persistence-worker-publisher"), broker_unreachable
        )
        publisher_connection.reconnect_callbacks.add(lambda *_: metrics.broker_reconnects.inc())
        publisher = ConfirmedPublisher(await open_publisher_channel(publisher_connection), settings.publish_timeout_s)
        consumer = Consumer(
            channel,
            topology.worker_queue,
            applier,
            Settler(publisher, schedules, hold_limit=max(1, settings.prefetch // 2)),
            Limits(settings.max_body_bytes, settings.max_content_bytes),
            metrics,
            Batching(
                settings.batch_size,
                settings.batch_wait_ms / 1000,
                settings.effective_batch_concurrency,
                settings.batch_max_bytes,
            ),
            FlowControl(settings.max_in_flight_bytes),
            fast_path=settings.amqp_fast_path,
        )
        gate.on_change(consumer.on_gate_change)
        exchange = await publisher.channel.get_exchange(EXCHANGE)
        relay = OutboxRelay(
            OutboxStore(engine),
            lambda message, routing_key: publisher.publish(message, routing_key, exchange),
            metrics,
            settings.outbox_batch_size,
            settings.outbox_poll_interval_s,
            settings.outbox_retention_days,
        )
        budget_telemetry.relay = relay
        worker = Worker(
            settings, engine, connection, publisher_connection, consumer, gate, metrics, health, relay=relay, http=http
        )
        _wire_health(worker)
        await consumer.start()
        worker.background.append(asyncio.create_task(_sample_pool(worker), name="pool-sampler"))
        worker.background.append(asyncio.create_task(relay.run(), name="outbox-relay"))
    except BaseException:
        if publisher_connection is not None:
            await publisher_connection.close()
        await connection.close()
        await engine.dispose()
        raise
    return worker


class BudgetTelemetry:
    """Hears of each committed batch's budget work: counts it, and wakes the relay for new events."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.relay: OutboxRelay | None = None

    def committed(self, unpriced: int, threshold_events: int) -> None:
        if unpriced:
            self.metrics.unpriced_events.inc(unpriced)
        if threshold_events:
            self.metrics.threshold_events.inc(threshold_events)
            if self.relay is not None:
                self.relay.wake()


def _wire_health(worker: Worker) -> None:
    consumer, gate = worker.consumer, worker.gate
    del worker.health.readiness["started"]
    worker.health.liveness["consumer_tasks"] = lambda: worker.draining or consumer.workers_alive
    worker.health.readiness["not_draining"] = lambda: not worker.draining
    worker.health.readiness["database"] = lambda: gate.is_open
    worker.health.readiness["broker"] = lambda: not (worker.connection.is_closed or worker.publisher_connection.is_closed)
    worker.health.readiness["consuming"] = lambda: consumer.consuming


async def _count_outage(metrics: Metrics, is_open: bool) -> None:
    if not is_open:
        metrics.outages.labels("database").inc()


async def _sample_pool(worker: Worker) -> None:
    pool = worker.engine.pool
    while True:
        in_use = pool.checkedout()  # type: ignore[attr-defined]
        worker.metrics.db_pool_in_use.set(in_use)
        if in_use >= worker.settings.db_pool_size + worker.settings.db_max_overflow:
            worker.metrics.db_pool_waits.inc()
        await asyncio.sleep(1.0)


async def stop_worker(worker: Worker, settings: Settings) -> int:
    """Drain in-flight deliveries within the shutdown timeout, then close everything.

    Returns how many deliveries were left unacknowledged (they will be redelivered).
    """
    worker.draining = True
    left = await worker.consumer.drain(settings.shutdown_timeout_s)
    if left:
        log.warning("shutdown_left_unacknowledged", deliveries=left)
    for task in worker.background:
        task.cancel()
    await asyncio.gather(*worker.background, return_exceptions=True)
    await worker.gate.stop()
    await worker.connection.close()
    await worker.publisher_connection.close()
    if worker.http is not None:
        await worker.http.cleanup()
    await worker.engine.dispose()
    return left


async def run_worker(settings: Settings) -> int:
    """Consume until SIGTERM or SIGINT (exit 0 after draining), until the watchdog gives up (exit 1),
    or refuse to start on a configuration that waiting cannot fix (exit 78)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # NOTE: handlers first, so a SIGTERM during start-up still ends in a clean exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.create_task(stop.wait(), name="stop-signal")
    starting = asyncio.create_task(start_worker(settings), name="worker-start")
    await asyncio.wait({stopped, starting}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # Stopped while still waiting for a dependency: nothing was consumed, nothing to drain.
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        log.info("worker_stopped", exit_code=EXIT_OK, during="start-up")
        return EXIT_OK
    try:
        worker = starting.result()
    except StartupRefused as refused:
        stopped.cancel()
        log.error("startup_refused", reason=refused.reason, exit_code=EXIT_CONFIG)
        return EXIT_CONFIG
    frozen = freeze_heap()
    watchdog = ConsumerWatchdog(
        lambda: worker.consumer.consuming or not worker.gate.is_open or worker.draining,
        settings.consumer_watchdog_s,
    )
    watch = asyncio.create_task(watchdog.run(), name="consumer-watchdog")
    log.info(
        "worker_started",
        prefetch=settings.prefetch,
        pool_size=settings.db_pool_size,
        batch_size=settings.batch_size,
        http_port=settings.http_port,
        gc_frozen_objects=frozen,
    )
    await asyncio.wait({stopped, watch}, return_when=asyncio.FIRST_COMPLETED)
    code = EXIT_OK
    if watch.done() and not stopped.done():
        log.error("consumer_not_restored", watchdog_s=settings.consumer_watchdog_s)
        code = EXIT_CONSUMER_NOT_RESTORED
    watch.cancel()
    stopped.cancel()
    log.info("worker_stopping", in_flight=worker.consumer.in_flight)
    await stop_worker(worker, settings)
    log.info("worker_stopped", exit_code=code)
    return code
