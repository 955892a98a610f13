"""The durable local spool: events wait here, in order, until the broker confirmed them.

One SQLite file in WAL mode with `synchronous=FULL`: an `append` has reached the disk
(fsync) when it returns, so the events survive the process being killed and the machine
losing power. Rows leave only after the broker's confirm (`remove`). The spool is bounded
by the bytes of the bodies it holds: an `append` past the bound is refused whole with
`SpoolFull`, and nothing already in the spool is touched.

One process owns a spool file at a time (an exclusive lock next to it); `Spool.open_slot`
takes the first free one of `path`, `path.1`, `path.2`…, so several processes of one
gateway started with the same setting each get their own, and a restarted process takes
over a file a dead one left behind.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from worker.producer import metrics
from worker.producer.events import OutgoingEvent

MAX_SLOTS = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL
)
"""


class SpoolFull(Exception):
    """The spool holds its maximum of bytes: the events were not accepted."""


class SpoolInUse(Exception):
    """Another process holds this spool file."""


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    """An event in the spool, with its position."""

    seq: int
    id: str
    type: str
    body: bytes


class Spool:
    """A bounded, durable FIFO of events on disk; safe to use from several threads."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._lock_file = _lock_exclusively(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            self._count, self._bytes = self._db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM spool"
            ).fetchone()
        except BaseException:
            os.close(self._lock_file)
            raise
        self._report()

    @classmethod
    def open_slot(cls, path: Path, max_bytes: int) -> Spool:
        """The first spool of `path`, `path.1`, `path.2`… no other process holds."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for slot in range(MAX_SLOTS):
            candidate = path if slot == 0 else path.with_name(f"{path.name}.{slot}")
            try:
                return cls(candidate, max_bytes)
            except SpoolInUse:
                continue
        raise SpoolInUse(f"all {MAX_SLOTS} spool files next to {path} are held by other processes")

    @property
    def count(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def append(self, events: Sequence[OutgoingEvent]) -> None:
        """Store `events` durably, in this order, all or none; `SpoolFull` past the bound."""
        if not events:
            return
        size = sum(len(event.body) for event in events)
        with self._lock:
            if self._bytes + size > self.max_bytes:
                metrics.SPOOL_REFUSED.inc(len(events))
                raise SpoolFull(
                    f"spool {self.path} holds {self._bytes} of {self.max_bytes} bytes: "
                    f"{len(events)} event(s) of {size} bytes refused"
                )
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO spool (event_id, type, body) VALUES (?, ?, ?)",
                    [(event.id, event.type, event.body) for event in events],
                )
            self._count += len(events)
            self._bytes += size
            self._report()

    def head(self, limit: int) -> list[SpooledEvent]:
        """The oldest `limit` events, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, type, body FROM spool ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [SpooledEvent(seq, event_id, event_type, bytes(body)) for seq, event_id, event_type, body in rows]

    def remove(self, events: Sequence[SpooledEvent]) -> None:
        """Forget events the broker confirmed."""
        if not events:
            return
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM spool WHERE seq = ?", [(event.seq,) for event in events])
            self._count -= len(events)
            self._bytes -= sum(len(event.body) for event in events)
            self._report()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            os.close(self._lock_file)

    def _report(self) -> None:
        metrics.SPOOL_EVENTS.set(self._count)
        metrics.SPOOL_BYTES.set(self._bytes)


def _lock_exclusively(path: Path) -> int:
    descriptor = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise SpoolInUse(f"spool {path} is held by another process") from None
    return descriptor
