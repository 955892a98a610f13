"""Private databases and vhosts on the machine's shared PostgreSQL and RabbitMQ, one per test run."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid

import asyncpg

ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_URL = os.environ.get("TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_BASE = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
AMQP_USER = os.environ.get("TEST_AMQP_USER", "guest")


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def create_database(name: str) -> str:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{PG_HOST_URL}/{name}"


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _rabbitmqctl(*args: str) -> None:
    tool = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([tool, "-q", *args], check=True, capture_output=True, timeout=60)


async def create_vhost(name: str) -> str:
    """A fresh vhost the test user may use fully; returns its AMQP URL."""
    await asyncio.to_thread(_rabbitmqctl, "add_vhost", name)
    await asyncio.to_thread(_rabbitmqctl, "set_permissions", "-p", name, AMQP_USER, ".*", ".*", ".*")
    return f"{AMQP_BASE}/{name}"


async def delete_vhost(name: str) -> None:
    await asyncio.to_thread(_rabbitmqctl, "delete_vhost", name)
