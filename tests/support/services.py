"""Private databases and vhosts on the machine's shared PostgreSQL and RabbitMQ, one per test run.

The same kit as the bench's (`worker.testkit`): databases through the `postgres` database,
vhosts through the management API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

from worker.settings import Settings
from worker.testkit.private_database import PrivateDatabase
from worker.testkit.private_vhost import PrivateVhost

ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_URL = os.environ.get("TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_BASE = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
AMQP_MANAGEMENT_URL = os.environ.get("TEST_AMQP_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672/")
# The servers every private database and vhost is made beside.
SERVERS = Settings(  # type: ignore[call-arg]
    _env_file=None,
    database_url=f"{PG_HOST_URL}/postgres",
    amqp_url=f"{AMQP_BASE}/",
    amqp_management_url=AMQP_MANAGEMENT_URL,
)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def create_database(name: str) -> str:
    """An empty database named `name`; returns its SQLAlchemy URL."""
    database = PrivateDatabase.named(SERVERS, name)
    await database.create(migrate=False)
    return database.url


async def drop_database(name: str) -> None:
    await PrivateDatabase.named(SERVERS, name).drop()


async def create_vhost(name: str) -> str:
    """A fresh vhost the test user may use fully; returns its AMQP URL."""
    vhost = PrivateVhost.named(SERVERS, name)
    await vhost.create()
    return vhost.amqp_url


async def delete_vhost(name: str) -> None:
    await PrivateVhost.named(SERVERS, name).delete()


def _rabbitmqctl(*args: str) -> None:
    """For what the management API kit does not do (users of a test's own)."""
    tool = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([tool, "-q", *args], check=True, capture_output=True, timeout=60)
