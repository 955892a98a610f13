"""The HTTP endpoint after real events: liveness, readiness through a database outage, metrics."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.amqp import Gateway
from tests.support.config import make_settings
from tests.support.db import create_user, tokens_used
from tests.support.events import message_created, usage_recorded
from tests.support.pg_cluster import PgCluster, free_port
from tests.support.services import create_database, drop_database, unique_name
from tests.support.waiting import eventually
from worker.db import schema
from worker.runtime.app import start_worker, stop_worker


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
async def http_worker(database_url, amqp_url):
    settings = make_settings(database_url, amqp_url, http_port=free_port())
    running = await start_worker(settings)
    yield running, settings.http_port
    await stop_worker(running, settings)


async def test_probes_answer_and_metrics_count_real_events(db, http_worker, amqp_url) -> None:
    _, port = http_worker
    assert (await get(port, "/livez"))[0] == 200
    assert (await get(port, "/readyz"))[0] == 200
    user_id = await create_user(db)
    async with Gateway(amqp_url) as gateway:
        event = message_created(user_id, prompt_tokens=20, completion_tokens=2)
        await gateway.publish(event)
        await gateway.publish(event)
        await gateway.publish(usage_recorded(user_id, prompt_tokens=100))
        await gateway.publish_raw(b"not json", message_id="bad")

    async def counted() -> dict:
        values = samples((await get(port, "/metrics"))[1])
        done = values.get(("worker_events_total", (("outcome", "dead_lettered"), ("type", "undecodable"))), 0)
        return values if done >= 1 and await tokens_used(db, user_id) == 122 else {}

    values = await eventually(counted)
    assert values[("worker_events_total", (("outcome", "applied"), ("type", "message.created")))] == 1
    assert values[("worker_events_total", (("outcome", "duplicate"), ("type", "message.created")))] == 1
    assert values[("worker_events_total", (("outcome", "applied"), ("type", "usage.recorded")))] == 1
    assert values[("worker_dead_lettered_total", (("reason", "invalid_json"),))] == 1
    assert values[("worker_tokens_counted_total", (("type", "message.created"),))] == 22
    assert values[("worker_tokens_counted_total", (("type", "usage.recorded"),))] == 100
    assert values[("worker_ready", ())] == 1
    assert values[("worker_batch_size_count", ())] >= 2
    assert values[("worker_publish_to_commit_seconds_count", ())] == 2
    assert ("worker_in_flight_deliveries", ()) in values
    # Label values are bounded: no ids anywhere.
    assert str(user_id) not in (await get(port, "/metrics"))[1]


async def test_readiness_follows_the_database_down_and_back(amqp_url, tmp_path) -> None:
    cluster = PgCluster()
    try:
        cluster.init()
        cluster.start()
        url = await cluster.migrated_database("aiworker")
        settings = make_settings(url, amqp_url, http_port=free_port(), outage_probe_interval_s=0.2)
        running = await start_worker(settings)
        try:
            port = settings.http_port
            assert (await get(port, "/readyz"))[0] == 200
            cluster.stop("immediate")
            # The outage is noticed by the first event that cannot be applied.
            async with Gateway(amqp_url) as gateway:
                await gateway.publish(usage_recorded("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"))
            await eventually(lambda: _status_is(port, "/readyz", 503), timeout=30)
            assert (await get(port, "/livez"))[0] == 200
            cluster.start()
            await eventually(lambda: _status_is(port, "/readyz", 200), timeout=30)
        finally:
            await stop_worker(running, settings)
    finally:
        cluster.cleanup()


async def test_readiness_is_503_while_draining(http_worker) -> None:
    running, port = http_worker
    running.draining = True
    status, body = await get(port, "/readyz")
    assert status == 503 and '"not_draining":false' in body
    running.draining = False


async def _status_is(port: int, path: str, status: int) -> bool:
    try:
        return (await get(port, path))[0] == status
    except aiohttp.ClientError:
        return False


async def test_a_worker_waits_unready_while_the_schema_is_behind_and_says_so(amqp_url, capfd) -> None:
    name = unique_name("aiworker_behind")
    url = await create_database(name)
    settings = make_settings(url, amqp_url, http_port=free_port())
    starting = asyncio.create_task(start_worker(settings))
    try:
        await eventually(lambda: _status_is(settings.http_port, "/livez", 200), timeout=20)
        status, body = await get(settings.http_port, "/readyz")
        assert status == 503 and '"schema_at_head":false' in body
        await asyncio.to_thread(schema.upgrade, settings)
        running = await asyncio.wait_for(starting, timeout=30)
        assert (await get(settings.http_port, "/readyz"))[0] == 200
        await stop_worker(running, settings)
    finally:
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await drop_database(name)
    assert "schema_behind" in "".join(capfd.readouterr())
