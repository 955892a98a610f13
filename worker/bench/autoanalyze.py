"""Keeps the planner's statistics of the private database current when the server's autovacuum is off.

The bench fills empty tables with tens of thousands of rows in seconds. On a server with
autovacuum (every production server) auto-analyze follows the growth, and each ANALYZE
invalidates the plans the workers' connections cached while the tables were empty. Without
it those plans stay as they were made for empty tables (sequential scans under `= ANY($1)`),
and PostgreSQL's cost per event more than doubles: a figure of this machine's configuration,
not of the worker. So when `SHOW autovacuum` is off, the bench looks five times a second for
every table whose rows changed, or whose pages grew, by more than the threshold since its
last analyze, and analyzes it. (Looking once a second, with the change counts alone, left
the plans of the empty tables in place for the first second or more of each run on a
machine that fills them at 12,000 events/s: the counts a backend reports lag by up to a
second, and by then `conversations` had grown from empty to thousands of rows under
sequential-scan plans, the foreign-key checks' among them, and the first 10,000 events of
a 30,000-event run were applied at half the rate of the rest.)
The threshold is autovacuum's base (50 rows) plus once the table's rows, not a tenth: a
table's statistics stay within a factor of two of its size, as they are on a long-running
server, whose tables grow by a small fraction between two analyzes. A tenth would analyze
a table every second here, since the bench fills them from empty in seconds (about ten
times per table in a 10 s drain, a sixth of PostgreSQL's CPU in a `perf` profile: more than
a server spends). After the bench empties the tables for the next run, `after_reset`
analyzes them at once, so the next run's statistics start from the empty tables, not from
the previous run's last ones. Its ANALYZE runs in a PostgreSQL backend, so its CPU counts
in the PostgreSQL figures, and it samples 3,000 rows (statistics target 10) instead of the
server default's 30,000: what the plans need from it is each table's size, which any
sample gives. With the full sample, the doubling tables of a 30,000-event run cost
PostgreSQL about 12 µs of CPU per event in ANALYZE alone (97 ms for `messages` at 21,000
rows), a cost of tables that start empty every run, which a long-running server, analyzing
large tables rarely, does not pay per event.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# PostgreSQL's default autovacuum_analyze_threshold; a scale factor of 1 instead of its 0.1 (see above).
ANALYZE_THRESHOLD = 50
ANALYZE_SCALE_FACTOR = 1.0
# 300 × target rows sampled per table: 3,000 (the server default, 100, samples 30,000).
STATISTICS_TARGET = 10
# Pages, besides the change counts: a backend reports its counts at most once a second
# (PostgreSQL 15's PGSTAT_MIN_INTERVAL), a table's size on disk is current.
ANALYZE_PAGE_THRESHOLD = 2
# Leaf tables only: autovacuum never analyzes a partitioned parent either.
_CHANGES = """
    SELECT s.relid::regclass::text AS name, s.n_mod_since_analyze AS changed, c.reltuples AS rows,
           pg_relation_size(c.oid) / current_setting('block_size')::int AS pages, c.relpages AS analyzed_pages
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE c.relkind = 'r'
"""


def due(changed: int, reltuples: float, pages: int = 0, analyzed_pages: int = 0) -> bool:
    """Autovacuum's rule, with the scale factor above: changes exceed threshold + factor × rows (unknown: 0);
    or, by the same rule in pages, the table grew past its size at the last analyze."""
    if changed > ANALYZE_THRESHOLD + ANALYZE_SCALE_FACTOR * max(reltuples, 0.0):
        return True
    return pages - analyzed_pages > ANALYZE_PAGE_THRESHOLD + ANALYZE_SCALE_FACTOR * analyzed_pages


class AutoAnalyze:
    """A background stand-in for auto-analyze on one database; does nothing when the server has autovacuum."""

    def __init__(self, dsn: str, interval_s: float = 0.2) -> None:
        self.dsn = dsn
        self.interval_s = interval_s
        self.by = "server"
        """Who keeps the statistics current: "server" (autovacuum is on) or "bench"."""
        self.analyzed = 0
        self._lock = asyncio.Lock()
        """One statement at a time on the one connection (the loop and `after_reset`)."""
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        if await conn.fetchval("SHOW autovacuum") == "on":
            await conn.close()
            return
        await conn.execute(f"SET default_statistics_target = {STATISTICS_TARGET}")
        self.by, self._conn = "bench", conn
        self._task = asyncio.create_task(self._run(), name="bench-autoanalyze")

    async def _run(self) -> None:
        assert self._conn is not None
        while True:
            try:
                async with self._lock:
                    for row in await self._conn.fetch(_CHANGES):
                        if due(row["changed"], row["rows"], row["pages"], row["analyzed_pages"]):
                            # A name from the catalog's regclass output, already quoted where needed.
                            await self._conn.execute(f"ANALYZE {row['name']}")
                            self.analyzed += 1
            except Exception as exc:  # noqa: BLE001 - a missed round is harmless; the next one looks again
                log.warning("bench_autoanalyze_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval_s)

    async def after_reset(self) -> None:
        """The bench emptied the tables: record that in the statistics now (when the bench keeps them)."""
        if self._conn is not None:
            async with self._lock:
                await self._conn.execute("ANALYZE")
                self.analyzed += 1

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
            "scale_factor": ANALYZE_SCALE_FACTOR,
            "statistics_target": STATISTICS_TARGET if self.by == "bench" else None,
        }
