"""The command line, run as a user would run it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

from tests.support.amqp import declare_worker_topology, drain_queue
from tests.support.config import make_settings
from tests.support.db import scalar
from tests.support.events import EXAMPLES
from tests.support.processes import REPO, settings_env
from tests.support.services import create_database, drop_database, unique_name


async def cli(settings, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker", *args],
        cwd=REPO,
        env=settings_env(settings),
        input=stdin,
        capture_output=True,
        timeout=120,
    )


async def test_python_dash_m_worker_lists_the_commands(settings) -> None:
    result = await cli(settings, "--help")
    assert result.returncode == 0
    for command in (b"migrate", b"run", b"publish", b"users"):
        assert command in result.stdout


async def test_migrate_builds_the_schema_on_an_empty_database(amqp_url) -> None:
    name = unique_name("aiworker_cli")
    url = await create_database(name)
    try:
        result = await cli(make_settings(url, amqp_url), "migrate")
        assert result.returncode == 0, result.stderr.decode()
        from sqlalchemy.ext.asyncio import create_async_engine

        from worker.db.migrations import expected_head

        engine = create_async_engine(url)
        try:
            assert await scalar(engine, "SELECT version_num FROM alembic_version") == expected_head()
            assert await scalar(engine, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'processed_events'::regclass") >= 8
        finally:
            await engine.dispose()
    finally:
        await drop_database(name)


async def test_users_create_prints_the_new_users_id(db, settings) -> None:
    email = f"{uuid.uuid4()}@cli.test"
    result = await cli(settings, "users", "create", "--email", email, "--tokens-limit", "5000000000", "--tier", "pro")
    assert result.returncode == 0, result.stderr.decode()
    user_id = uuid.UUID(result.stdout.decode().strip())
    assert await scalar(db, "SELECT email || ' ' || tier || ' ' || tokens_limit FROM users WHERE id = :id", id=user_id) == (
        f"{email} pro 5000000000"
    )
    again = await cli(settings, "users", "create", "--email", email)
    assert again.returncode == 1 and b"already exists" in again.stderr


async def test_publish_sends_the_file_byte_for_byte(settings, amqp_url) -> None:
    await declare_worker_topology(amqp_url, [1])
    path = EXAMPLES / "message.created.json"
    result = await cli(settings, "publish", str(path))
    assert result.returncode == 0, result.stderr.decode()
    [message] = await drain_queue(amqp_url, "llm.events.worker")
    assert message.body == path.read_bytes().strip()
    assert message.delivery_mode == 2 and message.content_type == "application/cloudevents+json"
    assert message.routing_key == "message.created"


async def test_publish_reads_json_lines_from_stdin(settings, amqp_url) -> None:
    await declare_worker_topology(amqp_url, [1])
    lines = b"\n".join((EXAMPLES / f"{name}.json").read_bytes().replace(b"\n", b"") for name in ("message.created", "usage.recorded"))
    result = await cli(settings, "publish", "-", stdin=lines)
    assert result.returncode == 0 and b"published 2" in result.stdout
    assert len(await drain_queue(amqp_url, "llm.events.worker")) == 2


async def test_publish_fails_when_the_broker_returns_the_message(settings) -> None:
    # A fresh vhost: the exchange exists only once `publish` declares it, and no queue is bound.
    result = await cli(settings, "publish", str(EXAMPLES / "usage.recorded.json"))
    assert result.returncode == 1
    assert b"returned" in result.stderr
