"""The engine (and its connection pool), built inside the running event loop from the settings."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worker.settings import Settings


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """An asyncpg engine whose sessions carry server-side timeouts and a client-side deadline."""
    cache = settings.db_statement_cache_size
    connect_args: dict[str, Any] = {"statement_cache_size": cache, "prepared_statement_cache_size": cache}
    if cache == 0:
        # Behind PgBouncer in transaction mode no statement may outlive its transaction on a
        # server connection, and names must not collide across clients sharing it.
        connect_args["prepared_statement_name_func"] = lambda: f"__asyncpg_{uuid.uuid4()}__"
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_command_timeout_s,
        # Sessions that outlive a database restart are thrown away on first use.
        pool_pre_ping=False,
        # NOTE: SQL parameters are user content; keep them out of exception text and logs.
        hide_parameters=True,
        connect_args={
            **connect_args,
            "command_timeout": settings.db_command_timeout_s,
            "timeout": settings.db_command_timeout_s,
            "server_settings": {
                "application_name": "llm-persistence-worker",
                # NOTE: UTC so that current_date (the inbox partition key) is the same on every pod.
                "TimeZone": "UTC",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "lock_timeout": str(settings.db_lock_timeout_ms),
                "idle_in_transaction_session_timeout": str(settings.db_statement_timeout_ms * 4),
            },
        },
    )

