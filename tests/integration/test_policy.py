"""The worker queue's policy: applied and checked through the management API, and what it does."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aio_pika
import pytest

from tests.support.amqp import Gateway, declare_worker_topology, drain_queue, queue_depth
from tests.support.config import make_settings
from tests.support.events import message_created
from tests.support.processes import REPO, settings_env
from tests.support.waiting import eventually
from worker.broker.management import ManagementClient, vhost_of
from worker.broker.policy import WORKER_QUEUE_POLICY, QueuePolicy, apply_policy, check_policy
from worker.contract.names import DEAD_LETTER_QUEUE, WORKER_QUEUE
from worker.errors import StartupRefused
from worker.runtime.app import start_worker, stop_worker
from worker.settings import Settings


async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "worker", *args], cwd=REPO, env=settings_env(settings),
        capture_output=True, timeout=120,
    )


async def policy_in_force(settings: Settings) -> bool:
    return (await check_policy(settings)).in_force


async def reject_until_dead_lettered(amqp_url: str, most: int = 100) -> int:
    """Act as a worker that crashes on the worker queue's head: reject it until the broker gives up on it."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(WORKER_QUEUE, ensure=True)
        rejections = 0
        while rejections < most and (message := await queue.get(no_ack=False, fail=False)) is not None:
            await message.nack(requeue=True)
            rejections += 1
        return rejections
    finally:
        await connection.close()


def test_the_vhost_comes_from_the_amqp_url_path() -> None:
    assert vhost_of("amqp://guest:guest@host:5672/") == "/"
    assert vhost_of("amqp://guest:guest@host:5672") == "/"
    assert vhost_of("amqp://guest:guest@host:5672/%2F") == "/"
    assert vhost_of("amqp://host/tenant%2Fa?heartbeat=5") == "tenant/a"
    assert vhost_of("amqp://host/plain") == "plain"


def test_the_policy_is_the_documented_one() -> None:
    assert WORKER_QUEUE_POLICY.body() == {
        "pattern": r"^llm\.events\.worker$",
        "apply-to": "queues",
        "priority": 10,
        "definition": {
            "delivery-limit": 20,
            "dead-letter-exchange": "",
            "dead-letter-routing-key": "llm.events.worker.dlq",
            "dead-letter-strategy": "at-least-once",
            "overflow": "reject-publish",
        },
    }


async def test_check_fails_on_a_fresh_vhost_before_apply(settings, amqp_url) -> None:
    status = await check_policy(settings)
    assert (status.defined, status.queue_exists, status.in_force) == (False, False, False)
    await declare_worker_topology(amqp_url, [1])
    status = await check_policy(settings)
    assert status.queue_exists and not status.in_force and status.effective_policy is None
    result = await cli(settings, "policy", "check")
    assert result.returncode == 1
    assert b"not in force" in result.stderr and b"worker policy apply" in result.stderr


async def test_apply_makes_check_pass(settings, amqp_url) -> None:
    await declare_worker_topology(amqp_url, [1])
    result = await cli(settings, "policy", "apply")
    assert result.returncode == 0, result.stderr.decode()
    assert b"in force" in result.stdout
    status = await check_policy(settings)
    assert status.in_force and status.effective_policy == "llm-events-worker" and not status.mismatches
    check = await cli(settings, "policy", "check")
    assert check.returncode == 0 and b"is in force" in check.stdout


async def test_apply_is_idempotent(settings, amqp_url) -> None:
    await declare_worker_topology(amqp_url, [1])
    await apply_policy(settings)
    await apply_policy(settings)
    await eventually(lambda: policy_in_force(settings))


async def test_a_policy_applied_before_the_queue_exists_reaches_it_once_declared(settings, amqp_url) -> None:
    await apply_policy(settings)
    status = await check_policy(settings)
    assert status.defined and status.pending and not status.in_force
    await declare_worker_topology(amqp_url, [1])
    await eventually(lambda: policy_in_force(settings))


async def test_a_higher_priority_policy_that_shadows_ours_fails_the_check(settings, amqp_url) -> None:
    await declare_worker_topology(amqp_url, [1])
    await apply_policy(settings)
    await eventually(lambda: policy_in_force(settings))
    shadow = QueuePolicy("shadow", "^llm\\.", "queues", 99, {"max-length": 1000000})
    async with ManagementClient.from_settings(settings) as api:
        await api.put_policy(shadow.name, shadow.body())

    async def shadowed() -> bool:
        return (await check_policy(settings)).effective_policy == "shadow"

    await eventually(shadowed)
    status = await check_policy(settings)
    assert not status.in_force and "shadow" in status.describe()
    assert status.mismatches["delivery-limit"] == (20, None)


async def test_with_the_policy_a_message_rejected_twenty_times_is_dead_lettered_by_the_broker(settings, amqp_url) -> None:
    await declare_worker_topology(amqp_url, [1])
    await apply_policy(settings)
    await eventually(lambda: policy_in_force(settings))
    event = message_created("00000000-0000-4000-8000-000000000000")
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(event, message_id=event["id"])

    rejections = await reject_until_dead_lettered(amqp_url)
    assert rejections > 20
    await eventually(lambda: queue_depth(amqp_url, DEAD_LETTER_QUEUE))
    [dead] = await drain_queue(amqp_url, DEAD_LETTER_QUEUE)
    assert dead.message_id == event["id"]
    [death] = dead.headers["x-death"]
    assert death["queue"] == WORKER_QUEUE and death["reason"] == "delivery_limit"
    assert list(death["routing-keys"]) == ["message.created"]
    assert "x-error-reason" not in dead.headers
    assert await queue_depth(amqp_url, WORKER_QUEUE) == 0



async def test_the_worker_refuses_to_start_without_the_queue_policy(database_url, amqp_url) -> None:
    settings = make_settings(database_url, amqp_url, require_queue_policy=True)
    with pytest.raises(StartupRefused, match="policy"):
        await start_worker(settings)


async def test_the_worker_starts_once_the_queue_policy_is_in_force(database_url, amqp_url) -> None:
    settings = make_settings(database_url, amqp_url, require_queue_policy=True)
    await apply_policy(settings)
    running = await start_worker(settings)
    await stop_worker(running, settings)
