"""Latency a mocked LiteLLM call gains from the callback (`worker.integrations.litellm`), same run.

    .venv/bin/python ops/bench/litellm_overhead.py [--calls 2000] [--blocks 10]

`litellm.Router.acompletion` with `mock_response` (no network; `LITELLM_LOCAL_MODEL_COST_MAP=True`),
one call at a time, each call's time from the `acompletion` call to its return. Blocks of
`--calls / --blocks` calls take turns without any callback and with the callback (its producer
spooling to a temporary file and publishing to a private vhost of the local RabbitMQ, the worker
queue bound so every event is confirmed), so both see the same machine state. LiteLLM runs success
hooks in the background after the call returned; that work still shares the event loop with the
next calls, which is what the figures include. Prints p50/p99/mean per mode as a Markdown table.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse  # noqa: E402

import aio_pika  # noqa: E402
import litellm  # noqa: E402

from worker.integrations.litellm import WorkerCallback  # noqa: E402
from worker.producer import Producer  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.testkit.private_vhost import PrivateVhost  # noqa: E402

MODEL_LIST = [{"model_name": "gpt-bench", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-offline"}}]


async def bind_sink(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("llm.events", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue("bench.sink", durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, "#")


async def timed_calls(router: litellm.Router, count: int, offset: int) -> list[float]:
    times = []
    for i in range(offset, offset + count):
        started = time.perf_counter()
        await router.acompletion(
            model="gpt-bench", messages=[{"role": "user", "content": f"question {i}"}], user=f"bench-user-{i % 20}",
            metadata={"conversation_id": f"bench-{i % 20}"}, mock_response=f"answer {i}",
        )
        times.append((time.perf_counter() - started) * 1000)
    return times


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per mode")
    parser.add_argument("--blocks", type=int, default=10)
    args = parser.parse_args()
    base = Settings()
    vhost = PrivateVhost.beside(base, "litellm")
    await vhost.create()
    results: dict[str, list[float]] = {"without callback": [], "with callback": []}
    try:
        await bind_sink(vhost.amqp_url)
        with tempfile.TemporaryDirectory(prefix="bench-litellm-") as directory:
            settings = base.model_copy(update={"amqp_url": vhost.amqp_url})
            producer = Producer(settings, spool_path=Path(directory) / "spool").start()
            callback = WorkerCallback(settings=settings, producer=producer)
            router = litellm.Router(model_list=MODEL_LIST, num_retries=0)
            await timed_calls(router, 200, 0)  # warm-up: imports, caches, first connection
            block = args.calls // args.blocks
            for number in range(args.blocks):
                for mode in results:
                    litellm.logging_callback_manager._reset_all_callbacks()
                    litellm.callbacks = [callback] if mode == "with callback" else []
                    results[mode] += await timed_calls(router, block, number * block)
                    await asyncio.sleep(0.5)  # the background hooks of this block finish before the next
            litellm.logging_callback_manager._reset_all_callbacks()
            drained = producer.drain(60)
            producer.close()
    finally:
        await vhost.delete()
    print(f"{len(results['with callback'])} calls per mode in {args.blocks} alternating blocks; "
          f"events left unconfirmed: {drained.pending}\n")
    print("| mode | p50 ms | p99 ms | mean ms |\n|---|---|---|---|")
    for mode, times in results.items():
        print(f"| {mode} | {quantile(times, 0.5):.3f} | {quantile(times, 0.99):.3f} | {statistics.fmean(times):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
