"""A private PostgreSQL database: created and migrated from the project's migrations, dropped at the end."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url

from worker.db.schema import build_schema
from worker.settings import Settings

ADMIN_DATABASE = "postgres"
NAME_PREFIX = "aiworker_"


def plain_dsn(sqlalchemy_url: str, database: str | None = None) -> str:
    """An asyncpg DSN from the worker's SQLAlchemy URL, optionally for another database."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True)
class PrivateDatabase:
    """A database of one bench run's or one test run's own, next to the one the settings name."""

    name: str
    admin_dsn: str
    url: str
    """SQLAlchemy URL, for the worker."""
    dsn: str
    """asyncpg DSN, for the bench's own queries."""

    @classmethod
    def beside(cls, settings: Settings, purpose: str = "bench") -> PrivateDatabase:
        return cls.named(settings, f"{NAME_PREFIX}{purpose}_{uuid.uuid4().hex[:10]}")

    @classmethod
    def named(cls, settings: Settings, name: str) -> PrivateDatabase:
        url = make_url(settings.database_url).set(database=name).render_as_string(hide_password=False)
        return cls(name, plain_dsn(settings.database_url, ADMIN_DATABASE), url, plain_dsn(settings.database_url, name))

    async def create(self, settings: Settings | None = None, *, migrate: bool = True) -> None:
        """CREATE DATABASE, then (unless told not to) the schema exactly as `worker migrate` builds it."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()
        if migrate:
            base = settings or Settings(_env_file=None)  # type: ignore[call-arg]
            await build_schema(base.model_copy(update={"database_url": self.url}))

    async def drop(self) -> None:
        """DROP DATABASE, disconnecting whatever is still connected."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()
