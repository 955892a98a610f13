"""`Producer`: durable hand-off to RabbitMQ. `publish` spools, a background thread publishes.

`publish` returns once the events are on disk (`worker.producer.spool`); it never waits for
the broker. A thread of the producer's own, with its own event loop, publishes the spool's
events oldest first, persistent and `mandatory`, up to `WORKER_PRODUCER_WINDOW` awaiting
their confirms at once, and deletes each only after the broker's ack. Anything else (the
broker unreachable, a nack, a return, a timeout, a lost channel) leaves the event in the
spool; the thread closes the connection, waits (0.1 s, doubling up to
`WORKER_PRODUCER_RECONNECT_MAX_S`) and reconnects by itself, starting again from the oldest
event. A crash, even SIGKILL, loses nothing: a restarted producer finds the spool and
publishes what it holds.

Ordering: events leave in spool order. Only after a failure can an event confirmed in the
same window reach the broker ahead of an earlier one that is retried. An event whose
confirm was lost may be published twice; its (`source`, `id`) makes the worker count it once.

The thread is the producer's own so that a synchronous caller (LiteLLM's SDK calls) and an
asynchronous one are served alike, and the caller's event loop never runs broker I/O.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from worker.broker.connection import amqp_url
from worker.broker.publisher import ConfirmedPublisher, PublishFailed, open_publisher_channel
from worker.broker.topology import declare_exchange
from worker.contract.names import CONTENT_TYPE
from worker.producer import metrics
from worker.producer.events import OutgoingEvent
from worker.producer.spool import Spool, SpooledEvent
from worker.settings import Settings

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.1


@dataclass(frozen=True)
class Drained:
    """Where a wait for the spool to empty ended."""

    pending: int
    """Events still in the spool."""
    last_failure: str | None
    """Why the latest publish attempt failed (no message content, no credentials), if one did."""

    @property
    def complete(self) -> bool:
        return self.pending == 0


class Producer:
    """Publishes contract events through a durable spool; see the module's docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        spool_path: Path | None = None,
        connection_name: str = "llm-persistence-worker-producer",
    ) -> None:
        self.settings = settings
        self.spool_path = Path(spool_path or settings.producer_spool_path)
        self.connection_name = connection_name
        self.spool: Spool | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._changed = threading.Condition()
        self._failures = 0
        self._last_failure: str | None = None
        self._stopping = False

    # -- the caller's side -----------------------------------------------------------------

    def start(self) -> Producer:
        """Open the spool (the first free slot of the configured path) and start publishing."""
        if self._thread is not None:
            return self
        self.spool = Spool.open_slot(self.spool_path, self.settings.producer_spool_max_bytes)
        self._thread = threading.Thread(target=self._thread_main, name="worker-producer", daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    @property
    def pending(self) -> int:
        """Events in the spool, not yet confirmed."""
        return self.spool.count if self.spool is not None else 0

    def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Store `events` durably (all or none; `SpoolFull` past the bound) and wake the publisher."""
        if self.spool is None:
            raise RuntimeError("the producer is not started")
        self.spool.append(events)
        self._wake_publisher()

    async def publish_async(self, events: Sequence[OutgoingEvent]) -> None:
        """`publish` off the caller's event loop (the spool's fsync would block it)."""
        await asyncio.to_thread(self.publish, events)

    def drain(self, timeout: float, *, stop_on_failure: bool = False) -> Drained:
        """Wait until the spool is empty, `timeout` passed, or (with `stop_on_failure`) an attempt failed."""
        with self._changed:
            failures_before = self._failures
            self._changed.wait_for(
                lambda: self.pending == 0 or (stop_on_failure and self._failures > failures_before), timeout
            )
            return Drained(self.pending, self._last_failure)

    async def drain_async(self, timeout: float, *, stop_on_failure: bool = False) -> Drained:
        return await asyncio.to_thread(self.drain, timeout, stop_on_failure=stop_on_failure)

    def close(self, drain_timeout: float = 0.0) -> Drained:
        """Give the spool up to `drain_timeout` to empty, then stop; what is left stays on disk."""
        if self._thread is None or self.spool is None:
            return Drained(self.pending, self._last_failure)
        result = self.drain(drain_timeout) if drain_timeout > 0 else Drained(self.pending, self._last_failure)
        self._stopping = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # the loop already ended
        self._thread.join(timeout=self.settings.publish_timeout_s + 10)
        self._thread = None
        self.spool.close()
        return Drained(self.spool.count, self._last_failure) if result.pending else result

    def _wake_publisher(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:
                pass  # closing: the events stay in the spool for the next start

    # -- the producer's thread -------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._run())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            self._loop = None
            loop.close()

    async def _run(self) -> None:
        self._wake, self._stop = asyncio.Event(), asyncio.Event()
        self._ready.set()
        backoff = RECONNECT_MIN_S
        while not self._stopping:
            connection = None
            try:
                connection = await aio_pika.connect(
                    amqp_url(self.settings, self.connection_name), timeout=self.settings.publish_timeout_s
                )
                channel = await open_publisher_channel(connection)
                exchange = await declare_exchange(channel)
                publisher = ConfirmedPublisher(channel, self.settings.publish_timeout_s)
                backoff = RECONNECT_MIN_S
                await self._publish_from_spool(publisher, exchange)
            except Exception as exc:  # every failure means the same: reconnect, the events wait
                self._failed(exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.producer_reconnect_max_s)
            finally:
                if connection is not None:
                    try:
                        await asyncio.wait_for(connection.close(), timeout=5)
                    except Exception:
                        pass  # the connection is gone either way

    async def _publish_from_spool(self, publisher: ConfirmedPublisher, exchange: aio_pika.abc.AbstractExchange) -> None:
        assert self.spool is not None and self._wake is not None
        while not self._stopping:
            # Clear before reading: an append after the read sets it again, so none is missed.
            self._wake.clear()
            batch = self.spool.head(self.settings.producer_window)
            if not batch:
                await self._wait_for_work()
                continue
            results = await asyncio.gather(
                *(publisher.publish(_message(event), event.type, exchange=exchange) for event in batch),
                return_exceptions=True,
            )
            confirmed = [event for event, result in zip(batch, results, strict=True) if result is None]
            self.spool.remove(confirmed)
            metrics.PUBLISHED.inc(len(confirmed))
            self._notify()
            failure = next((result for result in results if isinstance(result, BaseException)), None)
            if failure is not None:
                raise failure

    async def _wait_for_work(self) -> None:
        assert self._wake is not None and self._stop is not None
        woken = asyncio.ensure_future(self._wake.wait())
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({woken, stopped}, return_when=asyncio.FIRST_COMPLETED)
        woken.cancel()
        stopped.cancel()

    async def _pause(self, seconds: float) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _failed(self, exc: BaseException) -> None:
        # NOTE: the class only for anything but our own PublishFailed: a connection error's
        # text may carry the URL and its credentials.
        reason = str(exc) if isinstance(exc, PublishFailed) else f"broker unreachable or connection lost ({type(exc).__name__})"
        metrics.PUBLISH_FAILURES.inc()
        log.warning("producer_publish_failed: %s; %d event(s) kept in the spool", reason, self.pending)
        with self._changed:
            self._failures += 1
            self._last_failure = reason
            self._changed.notify_all()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()


def _message(event: SpooledEvent) -> aio_pika.Message:
    return aio_pika.Message(
        body=event.body,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event.id or None,
        type=event.type,
    )
