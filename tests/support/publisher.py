"""The test's gateway: a confirmed publisher that records every attempt and every confirm in a ledger.

`RecordingPublisher` writes into an `EventLedger` (the kit's `Ledger`, plus the bodies to
publish); after the faults heal, `worker.testkit.ledger.LedgerChecker` compares that ledger
with the database and the queues.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika

from tests.support.amqp import in_windows
from tests.support.events import body as encode
from tests.support.events import cost_of, tokens_of
from worker.contract.names import EXCHANGE, MESSAGE_CREATED
from worker.testkit.ledger import Ledger, Sent


@dataclass(slots=True)
class Entry(Sent):
    """A ledger record with what goes on the wire."""

    body: bytes = b""
    content_type: str | None = "application/cloudevents+json"


class EventLedger(Ledger):
    """The kit's ledger, filled from contract events and bad inputs."""

    def add_event(self, event: dict[str, Any]) -> Entry:
        """A valid event; its copies (same id) share one entry, the first payload counts."""
        data = event["data"]
        conversation = data.get("conversation_id")
        return self.add(Entry(  # type: ignore[return-value]
            event["id"], event["type"], user_id=str(data["user_id"]),
            conversation_id=str(conversation) if conversation else None,
            message_id=str(data["message_id"]) if event["type"] == MESSAGE_CREATED else None,
            tokens=tokens_of(event), cost=cost_of(event), body=encode(event),
        ))

    def add_bad(self, name: str, body: bytes, reason: str, routing_key: str, content_type: str | None) -> Entry:
        """An input the worker must dead-letter with `reason`; keyed by a fresh AMQP message id."""
        key = f"bad-{name}-{uuid.uuid4().hex[:8]}"
        return self.add(Entry(key, routing_key, expected_reason=reason, body=body,  # type: ignore[return-value]
                              content_type=content_type))


class RecordingPublisher:
    """A confirmed publisher (like the gateway) that records every confirm and rides out broker outages."""

    def __init__(self, amqp_url: str, ledger: EventLedger, *, outage_budget_s: float = 120) -> None:
        self.amqp_url = amqp_url
        self.ledger = ledger
        self.outage_budget_s = outage_budget_s
        self.reconnects = 0
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> RecordingPublisher:
        await self._connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await _quietly(self._connection.close())

    async def _connect(self) -> None:
        self._connection = await aio_pika.connect(self.amqp_url)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        self._generation += 1

    async def _reconnect(self, seen_generation: int) -> None:
        """Reconnect once per broken connection, however many publishes saw it break."""
        async with self._lock:
            if self._generation != seen_generation:
                return
            deadline = time.monotonic() + self.outage_budget_s
            if self._connection is not None:
                await _quietly(self._connection.close())
            while True:
                try:
                    await self._connect()
                    self.reconnects += 1
                    return
                except Exception:  # noqa: BLE001 - the broker is still away
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.25)  # pacing of reconnect attempts, not a correctness wait

    async def publish_entry(self, entry: Entry) -> None:
        """Publish until the broker confirms (a new attempt after a failure: at-least-once, like the gateway)."""
        deadline = time.monotonic() + self.outage_budget_s
        while True:
            generation = self._generation
            message = aio_pika.Message(
                body=entry.body,
                content_type=entry.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=entry.key,
            )
            entry.published += 1
            try:
                assert self._exchange is not None
                await asyncio.wait_for(self._exchange.publish(message, entry.type, mandatory=True), 15)
            except Exception:  # noqa: BLE001 - unconfirmed: maybe enqueued, maybe not; try again
                if time.monotonic() > deadline:
                    raise
                await self._reconnect(generation)
                continue
            entry.confirmed += 1
            return

    async def publish(self, event: dict[str, Any]) -> Entry:
        entry = self.ledger.add_event(event)
        await self.publish_entry(entry)
        return entry

    async def publish_many(self, events: Iterable[dict[str, Any]], window: int = 100) -> int:
        """Publish with up to `window` confirms outstanding; returns how many copies were confirmed."""
        return await self.publish_entries((self.ledger.add_event(e) for e in events), window)

    async def publish_entries(self, entries: Iterable[Entry], window: int = 100) -> int:
        return await in_windows((self.publish_entry(entry) for entry in entries), window)


async def _quietly(awaitable: Any) -> None:
    try:
        await asyncio.wait_for(awaitable, 5)
    except Exception:  # noqa: BLE001 - closing a connection that is already broken
        pass
