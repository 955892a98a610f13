"""The LiteLLM callback: `callbacks: worker.integrations.litellm.handler` (proxy) or
`litellm.callbacks = [handler]` (SDK). Needs the `litellm` extra.

For each successful call the success hook publishes the events of
`worker.integrations.litellm_mapping` through the producer's spool: the hook returns once
they are on disk (off the event loop, in a thread) and a background thread publishes them,
so the broker never holds up a request. A failed call publishes nothing. The hook never
raises into LiteLLM: a call it cannot record is logged (no content) and counted in
`worker_litellm_calls_not_recorded_total`.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from prometheus_client import Counter

from worker.integrations.litellm_mapping import NotRecorded, events_for_call
from worker.producer.events import OutgoingEvent
from worker.producer.producer import Producer
from worker.settings import Settings

log = logging.getLogger(__name__)

NOT_RECORDED = Counter(
    "worker_litellm_calls_not_recorded",
    "Successful LiteLLM calls the callback could not record, by reason.",
    ["reason"],
)


class WorkerCallback(CustomLogger):
    """A LiteLLM `CustomLogger` that publishes each successful call to the persistence worker."""

    def __init__(self, settings: Settings | None = None, producer: Producer | None = None) -> None:
        super().__init__()
        self._settings = settings
        self._producer = producer
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        # Read on first use, not at import: the proxy imports the module before its environment is final.
        if self._settings is None:
            self._settings = Settings()
        return self._settings

    @property
    def producer(self) -> Producer:
        """The producer, started on first use (its spool opened, its thread running)."""
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    producer = Producer(self.settings, connection_name="llm-persistence-worker-litellm").start()
                    atexit.register(producer.close, 2.0)
                    self._producer = producer
        return self._producer

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        events = self._events(kwargs, response_obj, start_time, end_time)
        if not events:
            return
        try:
            await self.producer.publish_async(events)
        except Exception as exc:
            self._not_recorded("spool", exc)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        events = self._events(kwargs, response_obj, start_time, end_time)
        if not events:
            return
        try:
            self.producer.publish(events)
        except Exception as exc:
            self._not_recorded("spool", exc)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """A failed call consumed nothing the worker counts: nothing is published."""

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """A failed call consumed nothing the worker counts: nothing is published."""

    def _events(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> list[OutgoingEvent]:
        try:
            return events_for_call(kwargs, response_obj, start_time, end_time, source=self.settings.producer_source)
        except NotRecorded as exc:
            self._not_recorded("unmapped", exc)
        except Exception as exc:  # never into LiteLLM
            self._not_recorded("error", exc)
        return []

    def _not_recorded(self, reason: str, exc: Exception) -> None:
        NOT_RECORDED.labels(reason).inc()
        # NOTE: our own exceptions' text names fields only; anything else by its class (it may quote content).
        detail = str(exc) if isinstance(exc, NotRecorded) or type(exc).__module__.startswith("worker.") else type(exc).__name__
        log.error("litellm_call_not_recorded reason=%s: %s", reason, detail)


handler = WorkerCallback()
"""The ready instance: `litellm_settings: callbacks: worker.integrations.litellm.handler`."""
