"""The producer against the real RabbitMQ: confirmed publishing, a refusing or absent broker, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import orjson
import pytest

from tests.support.amqp import declare_worker_topology, drain_queue
from tests.support.pg_cluster import free_port
from tests.support.processes import REPO, settings_env
from worker.producer import Producer, SpoolFull, usage_recorded
from worker.settings import Settings

pytestmark = pytest.mark.integration


def usage_events(n: int, start: int = 0) -> list:
    return [
        usage_recorded(source="producer-test", event_id=f"e{i}", user_id=uuid.UUID(int=i), model="m", prompt_tokens=i)
        for i in range(start, start + n)
    ]


def producer_settings(amqp_url: str, **overrides) -> Settings:
    values = {"amqp_url": amqp_url, "publish_timeout_s": 5, "producer_reconnect_max_s": 0.5, "log_format": "console"}
    return Settings(_env_file=None, **{**values, **overrides})


def nowhere() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


async def test_published_events_arrive_in_order_persistent_and_leave_the_spool(amqp_url: str, tmp_path: Path) -> None:
    await declare_worker_topology(amqp_url, [1])
    producer = Producer(producer_settings(amqp_url), spool_path=tmp_path / "spool").start()
    try:
        sent = usage_events(600)  # more than one window of 256
        producer.publish(sent[:1])
        producer.publish(sent[1:])
        assert (await producer.drain_async(30)).complete
    finally:
        producer.close()
    got = await drain_queue(amqp_url, "llm.events.worker")
    assert [m.body for m in got] == [e.body for e in sent]
    first = got[0]
    assert (first.delivery_mode, first.content_type, first.message_id, first.routing_key) == (
        2, "application/cloudevents+json", "e0", "usage.recorded"
    )


async def test_a_returned_event_stays_spooled_until_the_broker_can_route_it(amqp_url: str, tmp_path: Path) -> None:
    # A fresh vhost: nothing is bound to the exchange, so the broker returns the mandatory publish.
    producer = Producer(producer_settings(amqp_url), spool_path=tmp_path / "spool").start()
    try:
        producer.publish(usage_events(3))
        refused = await producer.drain_async(15, stop_on_failure=True)
        assert refused.pending == 3 and "returned" in (refused.last_failure or "")
        await declare_worker_topology(amqp_url, [1])
        assert (await producer.drain_async(30)).complete
    finally:
        producer.close()
    assert [orjson.loads(m.body)["id"] for m in await drain_queue(amqp_url, "llm.events.worker")] == ["e0", "e1", "e2"]


async def test_events_spooled_while_the_broker_is_unreachable_are_published_by_the_next_producer(
    amqp_url: str, tmp_path: Path
) -> None:
    await declare_worker_topology(amqp_url, [1])
    offline = Producer(producer_settings(nowhere()), spool_path=tmp_path / "spool").start()
    offline.publish(usage_events(5))
    failed = await offline.drain_async(15, stop_on_failure=True)
    assert failed.pending == 5 and "unreachable" in (failed.last_failure or "")
    assert "guest" not in (failed.last_failure or "")
    assert offline.close().pending == 5
    online = Producer(producer_settings(amqp_url), spool_path=tmp_path / "spool").start()
    try:
        assert (await online.drain_async(30)).complete
    finally:
        online.close()
    assert len(await drain_queue(amqp_url, "llm.events.worker")) == 5


async def test_a_producer_killed_with_sigkill_leaves_its_spool_to_the_restarted_one(amqp_url: str, tmp_path: Path) -> None:
    await declare_worker_topology(amqp_url, [1])
    spool = tmp_path / "spool"
    script = textwrap.dedent(f"""
        import time, uuid
        from worker.producer import Producer, usage_recorded
        from worker.settings import Settings
        producer = Producer(Settings(_env_file=None), spool_path={str(spool)!r}).start()
        for i in range(100):
            producer.publish([usage_recorded(
                source="producer-test", event_id=f"k{{i}}", user_id=uuid.UUID(int=i), model="m")])
        print("spooled", producer.pending, flush=True)
        time.sleep(120)
    """)
    env = settings_env(producer_settings(nowhere()))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=REPO)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"spooled 100\n"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    restarted = Producer(producer_settings(amqp_url), spool_path=spool).start()
    try:
        assert (await restarted.drain_async(30)).complete
    finally:
        restarted.close()
    got = [orjson.loads(m.body)["id"] for m in await drain_queue(amqp_url, "llm.events.worker")]
    assert got == [f"k{i}" for i in range(100)]


async def test_a_full_spool_refuses_the_publish_with_a_clear_error(tmp_path: Path) -> None:
    producer = Producer(producer_settings(nowhere(), producer_spool_max_bytes=1000), spool_path=tmp_path / "s").start()
    try:
        event = usage_events(1)[0]
        fits = 1000 // len(event.body)
        producer.publish([event] * fits)
        with pytest.raises(SpoolFull, match="refused"):
            producer.publish([event])
        assert producer.pending == fits
    finally:
        producer.close()
