"""Publish rate of the producer library (spool + confirms) against a bare aio-pika publisher with confirms.

    .venv/bin/python ops/bench/producer_rate.py [--events 20000] [--window 256] [--rounds 3]

Uses the local RabbitMQ (`WORKER_AMQP_URL`, `WORKER_AMQP_MANAGEMENT_URL`): a private vhost with the
exchange bound to one quorum queue, deleted at the end. Each round runs, one after the other:
- bare: aio-pika, one connection, publisher confirms, `mandatory`, persistent, `--window` publishes
  awaiting their confirms at once (the producer's window), no spool;
- producer, one event per `publish`: every event its own fsync'd spool append (a gateway's call);
- producer, 3 events per `publish`: what the LiteLLM callback hands it per call.
Events are `usage.recorded` bodies built by `worker.producer.usage_recorded` (about 330 bytes).
A producer run's time is from its first `publish` until the broker confirmed the last event.
Prints a Markdown table of events/s per round and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika

from worker.producer import Producer, usage_recorded
from worker.settings import Settings
from worker.testkit.private_vhost import PrivateVhost


def events(count: int) -> list:
    user = uuid.uuid4()
    return [
        usage_recorded(source="bench", event_id=f"e{i}", user_id=user, model="bench-model", prompt_tokens=10,
                       completion_tokens=20, request_id=f"r{i}")
        for i in range(count)
    ]


async def declare(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("llm.events", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue("bench.sink", durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, "#")


async def purge(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await (await channel.get_queue("bench.sink")).purge()


async def bare(amqp_url: str, batch: list, window: int) -> float:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange("llm.events")
        started = time.perf_counter()
        for offset in range(0, len(batch), window):
            await asyncio.gather(*(
                exchange.publish(
                    aio_pika.Message(e.body, content_type="application/cloudevents+json", message_id=e.id,
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    e.type, mandatory=True,
                )
                for e in batch[offset:offset + window]
            ))
        return len(batch) / (time.perf_counter() - started)


def through_producer(settings: Settings, batch: list, per_publish: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as directory:
        producer = Producer(settings, spool_path=Path(directory) / "spool").start()
        try:
            started = time.perf_counter()
            for offset in range(0, len(batch), per_publish):
                producer.publish(batch[offset:offset + per_publish])
            drained = producer.drain(600)
            elapsed = time.perf_counter() - started
        finally:
            producer.close()
    assert drained.complete, drained
    return len(batch) / elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Settings()
    vhost = PrivateVhost.beside(base, "producer")
    await vhost.create()
    try:
        settings = base.model_copy(update={"amqp_url": vhost.amqp_url, "producer_window": args.window})
        await declare(vhost.amqp_url)
        batch = events(args.events)
        results: dict[str, list[float]] = {"bare aio-pika, confirms": [], "producer, 1 event per publish": [],
                                           "producer, 3 events per publish": []}
        for _ in range(args.rounds):
            results["bare aio-pika, confirms"].append(await bare(vhost.amqp_url, batch, args.window))
            await purge(vhost.amqp_url)
            results["producer, 1 event per publish"].append(await asyncio.to_thread(through_producer, settings, batch, 1))
            await purge(vhost.amqp_url)
            results["producer, 3 events per publish"].append(await asyncio.to_thread(through_producer, settings, batch, 3))
            await purge(vhost.amqp_url)
    finally:
        await vhost.delete()
    print(f"{args.events} events, window {args.window}, {args.rounds} rounds\n")
    print("| publisher | events/s per round | median |\n|---|---|---|")
    for name, rates in results.items():
        print(f"| {name} | {', '.join(f'{r:,.0f}' for r in rates)} | {statistics.median(rates):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
