"""The broker side of a check: queue depths, consumers, and taking messages out to name them."""

from __future__ import annotations

import json
from collections.abc import Iterable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from worker.contract.names import HEADER_REASON, WORKER_QUEUE

UNIDENTIFIED = "<unidentified>"


class QueueReader:
    """Reads a vhost's queues on a connection of its own per call (the broker may have restarted meanwhile)."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url

    async def depths(self, names: Iterable[str]) -> dict[str, int]:
        """Ready messages per queue (passive declare: exact, unlike the statistics)."""
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            depths = {}
            for name in names:
                declared = await channel.declare_queue(name, passive=True)
                depths[name] = declared.declaration_result.message_count or 0
            return depths
        finally:
            await connection.close()

    async def consumers(self, name: str = WORKER_QUEUE) -> int:
        connection = await aio_pika.connect(self.amqp_url)
        try:
            declared = await (await connection.channel()).declare_queue(name, passive=True)
            return declared.declaration_result.consumer_count or 0
        finally:
            await connection.close()

    async def drain(self, names: Iterable[str]) -> list[AbstractIncomingMessage]:
        """Take every ready message out of `names` (gone from the broker afterwards)."""
        connection = await aio_pika.connect(self.amqp_url)
        messages = []
        try:
            channel = await connection.channel()
            for name in names:
                queue = await channel.declare_queue(name, passive=True)
                while (message := await queue.get(fail=False, no_ack=True)) is not None:
                    messages.append(message)
        finally:
            await connection.close()
        return messages


def message_key(message: AbstractIncomingMessage) -> str:
    """The ledger key of a message: its AMQP message id, else the event id in its body."""
    if message.message_id:
        return message.message_id
    try:
        return str(json.loads(message.body).get("id"))
    except Exception:  # noqa: BLE001 - a bad input without an id
        return UNIDENTIFIED


def dead_letter_reason(message: AbstractIncomingMessage) -> str:
    reason = (message.headers or {}).get(HEADER_REASON)
    return reason.decode() if isinstance(reason, bytes) else str(reason or "<no reason>")
