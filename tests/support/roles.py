"""Uniquely named owner/worker roles from ops/postgres on the shared cluster, and their cleanup."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.support.services import ADMIN_DSN, PG_HOST_URL, unique_name

POSTGRES_OPS = Path(__file__).resolve().parents[2] / "ops" / "postgres"


@dataclass(frozen=True)
class Roles:
    """An owner and a worker role of one database, with their passwords."""

    database: str
    owner: str
    owner_password: str
    worker: str
    worker_password: str

    def sqlalchemy_url(self, role: str) -> str:
        password = self.owner_password if role == self.owner else self.worker_password
        scheme, host = PG_HOST_URL.split("://", 1)
        host = host.split("@", 1)[-1]
        return f"{scheme}://{role}:{password}@{host}/{self.database}"

    def libpq_url(self, role: str) -> str:
        return self.sqlalchemy_url(role).replace("postgresql+asyncpg://", "postgresql://", 1)


def new_roles(database: str) -> Roles:
    return Roles(
        database=database,
        owner=unique_name("aiw_owner"),
        owner_password=secrets.token_urlsafe(16),
        worker=unique_name("aiw_worker"),
        worker_password=secrets.token_urlsafe(16),
    )


def _admin_url(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


async def psql(url: str, script: str, **variables: str) -> str:
    """Run one of ops/postgres's scripts with psql variables; returns its output, raises on failure."""
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    args += ["-f", str(POSTGRES_OPS / script), url]
    done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"psql {script} failed ({done.returncode}): {done.stderr}")
    return done.stdout + done.stderr


async def apply_roles(roles: Roles) -> str:
    """roles.sql as the cluster's superuser, as a DBA would run it."""
    return await psql(
        _admin_url(roles.database),
        "roles.sql",
        owner_role=roles.owner,
        owner_password=roles.owner_password,
        worker_role=roles.worker,
        worker_password=roles.worker_password,
    )


async def apply_worker_grants(roles: Roles) -> str:
    """worker-grants.sql as the owner, as the migration job runs it."""
    return await psql(roles.libpq_url(roles.owner), "worker-grants.sql", worker_role=roles.worker)


async def drop_roles(*names: str) -> None:
    """Roles are cluster-wide: drop them even when a test failed half-way."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        for name in names:
            await conn.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await conn.close()
