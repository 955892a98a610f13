"""Start-up: a worker whose dependencies are not there yet waits for them, live and not ready; what waiting
cannot fix ends in one clear line and a documented exit code, never a traceback."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest
from yarl import URL

from tests.faults.fleet import log_excerpt, logged
from tests.faults.scenario import fault_settings
from tests.support.amqp import Gateway
from tests.support.db import create_user, tokens_used
from tests.support.events import usage_recorded
from tests.support.pg_cluster import free_port
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually
from worker.runtime.startup import EXIT_CONFIG


@pytest.fixture(autouse=True)
def batch_mode() -> int:
    """Start-up does not depend on how events are batched: once, with the default."""
    return 1


def _through(url: str, port: int) -> str:
    return str(URL(url).with_port(port))


async def _status(port: int, path: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status


def _tracebacks(worker) -> int:
    return sum("Traceback" in line for line in worker.log_lines())


async def test_a_worker_started_before_its_database_and_broker_waits_live_and_not_ready_then_consumes(
    db, database_url, amqp_url, fleet
) -> None:
    user_id = await create_user(db)
    http_port = free_port()
    async with TcpProxy("127.0.0.1", 5432) as pg, TcpProxy("127.0.0.1", 5672) as broker:
        pg.cut()
        broker.cut()
        settings = fault_settings(
            _through(database_url, pg.port), _through(amqp_url, broker.port), http_port=http_port
        )
        worker = fleet.spawn(settings, "early")

        def waits_for(dependency: str, attempts: int):
            async def probe() -> bool:
                lines = [r for r in worker.log_records() if r.get("event") == "dependency_unreachable"]
                return sum(r.get("dependency") == dependency for r in lines) >= attempts

            return probe

        await eventually(waits_for("database", 3), timeout=30)
        assert await _status(http_port, "/livez") == 200
        assert await _status(http_port, "/readyz") == 503
        pg.heal()
        await eventually(waits_for("broker", 2), timeout=30)
        assert await _status(http_port, "/readyz") == 503
        broker.heal()
        await eventually(lambda: asyncio.to_thread(worker.started), timeout=30)
        await eventually(lambda: _ready(http_port), timeout=30)
        async with Gateway(amqp_url) as gateway:
            await gateway.publish(usage_recorded(user_id, prompt_tokens=7, completion_tokens=5))

        async def applied() -> bool:
            return await tokens_used(db, user_id) == 12

        await eventually(applied, timeout=30)
        assert await asyncio.to_thread(worker.terminate, 30) == 0
    assert _tracebacks(worker) == 0, log_excerpt([worker])
    # Backoff: a handful of lines over several seconds, not one per probe interval.
    assert logged([worker], "dependency_unreachable") < 20, log_excerpt([worker])


async def _ready(port: int) -> bool:
    return await _status(port, "/readyz") == 200


async def test_a_worker_stopped_while_waiting_for_its_database_exits_zero_at_once(
    database_url, amqp_url, fleet
) -> None:
    async with TcpProxy("127.0.0.1", 5432) as pg:
        pg.cut()
        worker = fleet.spawn(fault_settings(_through(database_url, pg.port), amqp_url), "stopped-early")
        await eventually(lambda: asyncio.to_thread(logged, [worker], "dependency_unreachable"), timeout=30)
        worker.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.process.wait, 10)
    assert code == 0, log_excerpt([worker])
    assert _tracebacks(worker) == 0, log_excerpt([worker])


async def test_a_worker_without_its_queue_policy_exits_with_the_configuration_code_and_one_line(
    database_url, amqp_url, fleet
) -> None:
    worker = fleet.spawn(fault_settings(database_url, amqp_url, require_queue_policy=True), "no-policy")
    code = await asyncio.to_thread(worker.process.wait, 60)
    assert code == EXIT_CONFIG, log_excerpt([worker])
    refused = [r for r in worker.log_records() if r.get("event") == "startup_refused"]
    assert len(refused) == 1 and "WORKER_REQUIRE_QUEUE_POLICY" in refused[0]["reason"], log_excerpt([worker])
    assert _tracebacks(worker) == 0, log_excerpt([worker])
