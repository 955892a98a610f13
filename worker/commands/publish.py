"""`worker publish FILE|-`: the reference producer. Persistent, confirmed, `mandatory` publishes.

Input: one JSON event, a JSON array of events, or one event per line (JSON Lines). A
single event or a line is published byte for byte; array elements are re-serialised.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import orjson

from worker.broker.connection import connect_broker
from worker.broker.publisher import ConfirmedPublisher, PublishFailed, open_publisher_channel
from worker.broker.topology import declare_exchange
from worker.contract.names import CONTENT_TYPE
from worker.settings import Settings


def read_events(raw: bytes) -> Iterator[tuple[bytes, dict]]:
    """Yield (body, parsed event) pairs from a file's bytes."""
    stripped = raw.strip()
    try:
        document = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        yield stripped, document
        return
    if isinstance(document, list):
        for item in document:
            yield orjson.dumps(item), item
        return
    for number, line in enumerate(stripped.splitlines(), start=1):
        if line.strip():
            try:
                yield line.strip(), orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"line {number} is not JSON") from exc


def event_message(body: bytes, event: dict) -> aio_pika.Message:
    """A persistent AMQP message for one CloudEvent in structured mode."""
    return aio_pika.Message(
        body=body,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(event.get("id", "")) or None,
        type=str(event.get("type", "")) or None,
    )


async def publish_events(settings: Settings, raw: bytes) -> int:
    """Publish every event; return how many were confirmed. Raises PublishFailed on the first failure."""
    connection = await connect_broker(settings, "llm-persistence-worker-publish")
    try:
        channel = await open_publisher_channel(connection)
        exchange = await declare_exchange(channel)
        publisher = ConfirmedPublisher(channel, settings.publish_timeout_s)
        count = 0
        for body, event in read_events(raw):
            if not isinstance(event, dict):
                raise ValueError(f"event {count + 1} is not a JSON object")
            routing_key = event.get("type")
            if not isinstance(routing_key, str) or not routing_key:
                raise ValueError(f"event {count + 1} has no string 'type' to route by")
            await publisher.publish(event_message(body, event), routing_key, exchange=exchange)
            count += 1
        return count
    finally:
        await connection.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("publish", help="publish JSON events to the exchange (reference producer)")
    parser.add_argument("file", help="a JSON event, a JSON array of events or JSON Lines; '-' for stdin")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    source = args.file
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    try:
        count = asyncio.run(publish_events(settings, raw))
    except (PublishFailed, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"published {count} event(s)")
    return 0
