"""The broker (a private RabbitMQ node) stopped during 100 LiteLLM calls and started again: every event arrives, none counts twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.litellm.calls import call, provision, reported_tokens, stored_rows, wait_for_counts
from tests.support.config import make_settings
from tests.support.rabbit_node import RabbitNode
from worker.integrations.litellm import WorkerCallback
from worker.producer import Producer, project_uuid
from worker.runtime.app import start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 10
CALLS = 100


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    rabbit = RabbitNode()
    try:
        rabbit.start()
        yield rabbit
    finally:
        rabbit.cleanup()


@pytest.fixture
async def node_settings(database_url: str, node: RabbitNode):
    return make_settings(database_url, node.amqp_url, publish_timeout_s=3, producer_reconnect_max_s=0.5)


@pytest.fixture
async def node_worker(node_settings) -> AsyncIterator[None]:
    running = await start_worker(node_settings)
    yield
    await stop_worker(running, node_settings)


async def test_calls_while_the_broker_is_down_are_published_once_it_is_back(
    node: RabbitNode, node_settings, node_worker, db, router, capture, callbacks, tmp_path: Path
) -> None:
    producer = Producer(node_settings, spool_path=tmp_path / "spool").start()
    callbacks.insert(0, WorkerCallback(settings=node_settings, producer=producer))
    try:
        names = await provision(node_settings, USERS)

        async def calls(turns: range) -> None:
            await asyncio.gather(*(call(router, names[t % USERS], t, conversation=None) for t in turns))

        await calls(range(0, 30))
        await asyncio.to_thread(node.stop)
        await calls(range(30, 70))
        await capture.settled(70)
        # The callback returned for every call: their events wait in the spool.
        assert producer.pending > 0
        await asyncio.to_thread(node.start)
        await calls(range(70, CALLS))
        await capture.settled(CALLS)
        expected = reported_tokens(capture.successes)
        await wait_for_counts(db, expected, timeout=180)
        assert (await producer.drain_async(30)).complete
        users = [project_uuid(name) for name in names]
        assert await stored_rows(db, users) == (2 * CALLS, CALLS)
    finally:
        producer.close()
