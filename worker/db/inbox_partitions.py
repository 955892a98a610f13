"""Daily partitions of the inbox (`processed_events`): created ahead, dropped whole when expired."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from worker.db.failures import sqlstate_of
from worker.settings import Settings

log = structlog.get_logger(__name__)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

PARENT = "processed_events"
DEFAULT_PARTITION = f"{PARENT}_default"
_DAILY = re.compile(rf"^{PARENT}_p(\d{{8}})$")
# Arbitrary constant so concurrent pods do not run the same DDL at once.
_MAINTENANCE_LOCK_KEY = 0x1B0C5
# What PostgreSQL raises when the default partition already holds rows of a new partition's range.
CHECK_VIOLATION = "23514"


def partition_name(day: date) -> str:
    """`processed_events_pYYYYMMDD`."""
    return f"{PARENT}_p{day:%Y%m%d}"


@dataclass
class MaintenanceReport:
    """What one maintenance run changed."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Days that could not get a partition (their rows already sit in the default one)."""


async def maintain_partitions(
    conn: AsyncConnection, *, today: date, days_ahead: int, retention_days: int | None
) -> MaintenanceReport:
    """Create partitions for today … today+days_ahead; drop those wholly older than the retention.

    `retention_days=None` only creates. Runs in the caller's transaction.
    """
    report = MaintenanceReport()
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MAINTENANCE_LOCK_KEY})
    existing = await _existing_daily_partitions(conn)
    for offset in range(days_ahead + 1):
        day = today + timedelta(days=offset)
        if day not in existing:
            name = partition_name(day)
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        text(
                            f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF {PARENT} '
                            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
                        )
                    )
            except DBAPIError as exc:
                if sqlstate_of(exc) != CHECK_VIOLATION:
                    raise
                # Rows for that day already landed in the default partition; inserts keep
                # working there, and the runbook says how to move them.
                report.failed.append(name)
                continue
            report.created.append(name)
    if retention_days is not None:
        oldest_kept = today - timedelta(days=retention_days)
        for day in sorted(existing):
            if day < oldest_kept:
                name = partition_name(day)
                await conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
                report.dropped.append(name)
    return report


async def _existing_daily_partitions(conn: AsyncConnection) -> set[date]:
    rows = await conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent "
            "AND p.relnamespace = to_regnamespace(current_schema())::oid"
        ),
        {"parent": PARENT},
    )
    days = set()
    for (name,) in rows:
        match = _DAILY.match(name)
        if match:
            raw = match.group(1)
            days.add(date(int(raw[:4]), int(raw[4:6]), int(raw[6:])))
    return days


async def ensure_inbox_partitions(engine: AsyncEngine, settings: Settings, *, drop_expired: bool) -> None:
    """Create the coming days' inbox partitions (and drop expired ones when asked)."""
    async with engine.begin() as conn:
        report = await maintain_partitions(
            conn,
            today=datetime.now(UTC).date(),
            days_ahead=settings.inbox_days_ahead,
            retention_days=settings.inbox_retention_days if drop_expired else None,
        )
    if report.created or report.dropped:
        log.info("inbox_partitions_maintained", created=report.created, dropped=report.dropped)
    if report.failed:
        log.error("inbox_partitions_blocked_by_default_rows", partitions=report.failed)


async def try_inbox_partitions(engine: AsyncEngine, settings: Settings) -> None:
    """Best effort at start-up: a least-privilege worker role cannot create tables, and the
    daily `worker inbox maintain` job (as the owner) is what keeps partitions ahead."""
    try:
        await ensure_inbox_partitions(engine, settings, drop_expired=False)
    except DBAPIError as exc:
        if sqlstate_of(exc) != "42501":
            raise
        log.info("inbox_partitions_left_to_maintenance_job", reason="no privilege to create partitions")
