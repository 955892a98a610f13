"""The raw consumer in a process of its own, for the broker-alone latency phase (`python -m worker.bench.raw_latency_consumer`).

The worker's consumer runs in its own process, so the floor it is compared with must too:
in the bench's process the raw consumer would share one core with the publisher. It
connects with `WORKER_AMQP_URL`, prints `subscribed` once its consumer is registered, takes
`count` messages from `queue` as the raw baseline does (parse, multiple-ack), and writes
each message id's arrival time (epoch seconds) to `output` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from worker.bench.amqp_side import connect
from worker.bench.baseline import SUBSCRIBED, drain
from worker.runtime.loop import run
from worker.settings import Settings


async def consume(settings: Settings, queue: str, count: int, prefetch: int, output: Path) -> None:
    connection = await connect(settings.amqp_url)
    try:
        delivered: dict[str, float] = {}
        subscribed = asyncio.Event()
        consuming = asyncio.create_task(drain(connection, queue, count, prefetch, None, delivered, subscribed))
        waiting = asyncio.ensure_future(subscribed.wait())
        await asyncio.wait([waiting, consuming], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if consuming.done():
            consuming.result()  # raises what stopped it
        sys.stdout.buffer.write(SUBSCRIBED)
        sys.stdout.buffer.flush()
        await consuming
        output.write_bytes(orjson.dumps(delivered))
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue")
    parser.add_argument("count", type=int)
    parser.add_argument("prefetch", type=int)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    settings = Settings()
    run(consume(settings, args.queue, args.count, args.prefetch, args.output), settings.event_loop)


if __name__ == "__main__":
    main()
