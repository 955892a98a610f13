"""The relay's side of the outbox: claim the next events to publish, mark them sent, prune old ones.

A claim takes, in `seq` order, only events with no earlier unsent event of the same
ordering key (a user), and locks them `FOR UPDATE SKIP LOCKED`: relays in every worker share
the work, and a key's events are published one after the other, in order, whichever relay
takes them. The claim's transaction stays open while the relay publishes; the events the
broker confirmed are marked sent in it, and the commit releases the rest. A relay that dies
before the commit leaves its events unsent: the next claim publishes them again, with the
same ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.db.transaction import Transaction

_CLAIM = """
    SELECT o.seq, o.event_id, o.routing_key, CAST(o.payload AS text)
    FROM outbox o
    WHERE o.sent_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM outbox e
                      WHERE e.ordering_key = o.ordering_key AND e.sent_at IS NULL AND e.seq < o.seq)
    ORDER BY o.seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
"""
_MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE seq = ANY($1::bigint[])"
_PRUNE = "DELETE FROM outbox WHERE sent_at < now() - make_interval(days => $1::int)"
_UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    event_id: str
    routing_key: str
    body: bytes


class Claim:
    """Events claimed in one open transaction; `mark_sent` before the block ends."""

    def __init__(self, sql: Transaction, events: list[PendingEvent]) -> None:
        self.sql = sql
        self.events = events

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        if seqs:
            await self.sql.fetch(_MARK_SENT, list(seqs))


class OutboxStore:
    """The outbox table, from the relay's side."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[Claim]:
        """Lock up to `limit` publishable events; commit what was marked sent when the block ends."""
        sql = Transaction(await self.engine.connect())
        committed = False
        try:
            rows = await sql.fetch(_CLAIM, limit)
            yield Claim(sql, [PendingEvent(r[0], r[1], r[2], r[3].encode()) for r in rows])
            await sql.commit()
            committed = True
        finally:
            try:
                await sql.close(rollback=not committed)
            except Exception:  # noqa: BLE001 - a dead connection: the server ends the transaction anyway
                pass

    async def prune(self, retention_days: int) -> int:
        """Delete events sent more than `retention_days` ago; return how many."""
        async with self.engine.begin() as conn:
            result = await conn.exec_driver_sql(_PRUNE, (retention_days,))
            return result.rowcount or 0

    async def unsent(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.exec_driver_sql(_UNSENT)).scalar_one())
