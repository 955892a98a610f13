"""Keeps the planner's statistics of the private database current when the server's autovacuum is off.

The bench fills empty tables with tens of thousands of rows in seconds. On a server with
autovacuum (every production server) auto-analyze follows the growth, and each ANALYZE
invalidates the plans the workers' connections cached while the tables were empty. Without
it those plans stay as they were made for empty tables (sequential scans under `= ANY($1)`),
and PostgreSQL's cost per event more than doubles: a figure of this machine's configuration,
not of the worker. So when `SHOW autovacuum` is off, the bench looks once a second for every
table whose rows changed by more than autovacuum's default threshold since its last analyze,
and analyzes it, but a table at most once per `autovacuum_naptime` (60 s by default): the
launcher visits a database once per naptime, so a server never analyzes a table more often.
(Up to commit 78da361 the stand-in analyzed whenever a table was due, up to once a second:
ten times in a 10 s drain, which spent a sixth of PostgreSQL's CPU on ANALYZE.) After the
bench empties the tables for the next run (`forget`), the next analyze is due at once again,
as for a new table. Its ANALYZE runs in a PostgreSQL backend, so its CPU counts in the
PostgreSQL figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# PostgreSQL's defaults of autovacuum_analyze_threshold and autovacuum_analyze_scale_factor.
ANALYZE_THRESHOLD = 50
ANALYZE_SCALE_FACTOR = 0.1
# Leaf tables only: autovacuum never analyzes a partitioned parent either.
_CHANGES = """
    SELECT s.relid::regclass::text AS name, s.n_mod_since_analyze AS changed, c.reltuples AS rows
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE c.relkind = 'r'
"""


def due(changed: int, reltuples: float) -> bool:
    """Autovacuum's rule: analyze once changes exceed threshold + scale factor × rows (unknown rows: 0)."""
    return changed > ANALYZE_THRESHOLD + ANALYZE_SCALE_FACTOR * max(reltuples, 0.0)


class AutoAnalyze:
    """A background stand-in for auto-analyze on one database; does nothing when the server has autovacuum."""

    def __init__(self, dsn: str, interval_s: float = 1.0) -> None:
        self.dsn = dsn
        self.interval_s = interval_s
        self.by = "server"
        """Who keeps the statistics current: "server" (autovacuum is on) or "bench"."""
        self.analyzed = 0
        self.naptime_s = 60.0
        self._last: dict[str, float] = {}
        """When the bench last analyzed each table (monotonic seconds)."""
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        if await conn.fetchval("SHOW autovacuum") == "on":
            await conn.close()
            return
        self.by, self._conn = "bench", conn
        self.naptime_s = float(await conn.fetchval("SELECT setting FROM pg_settings WHERE name = 'autovacuum_naptime'"))
        self._task = asyncio.create_task(self._run(), name="bench-autoanalyze")

    async def _run(self) -> None:
        assert self._conn is not None
        while True:
            try:
                for row in await self._conn.fetch(_CHANGES):
                    name = row["name"]
                    if due(row["changed"], row["rows"]) and self._rested(name):
                        # A name from the catalog's regclass output, already quoted where needed.
                        await self._conn.execute(f"ANALYZE {name}")
                        self._last[name] = time.monotonic()
                        self.analyzed += 1
            except Exception as exc:  # noqa: BLE001 - a missed round is harmless; the next one looks again
                log.warning("bench_autoanalyze_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval_s)

    def _rested(self, name: str) -> bool:
        last = self._last.get(name)
        return last is None or time.monotonic() - last >= self.naptime_s

    def forget(self) -> None:
        """The tables were emptied: each is due again as soon as it passes the threshold."""
        self._last.clear()

    async def stop(self) -> dict[str, object]:
        """Stop; return who kept the statistics and how many ANALYZE the bench ran."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        return {
            "by": self.by,
            "analyze_runs": self.analyzed,
            "interval_s": self.interval_s,
            "naptime_s": self.naptime_s,
        }
