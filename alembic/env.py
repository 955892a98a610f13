"""Async Alembic environment: the URL comes from the worker's settings, never from alembic.ini."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from worker.db.inbox_partitions import PARENT as INBOX_TABLE
from worker.db.models import Base
from worker.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata
# Migrations must never queue behind live traffic for long: fail fast and retry the deploy.
MIGRATION_LOCK_TIMEOUT = "5s"


def _database_url() -> str:
    return (
        config.attributes.get("database_url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or Settings().database_url
    )


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001
    """Daily inbox partitions are managed at run time (worker.db.inbox_partitions), not by migrations."""
    if type_ == "table" and reflected and compare_to is None and name.startswith(f"{INBOX_TABLE}_"):
        return False
    return True


def _configure(connection: Connection | None = None, **kwargs) -> None:  # noqa: ANN003
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    connection.exec_driver_sql(f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(run_migrations_online())
