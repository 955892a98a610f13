"""Sorts database exceptions into the contract's outcomes: transient, outage, or the event's own fault."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa_exc

from worker.errors import Outage, TransientError

# SQLSTATEs another attempt may not hit.
TRANSIENT_STATES = {
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "55P03": "lock not available (lock_timeout)",
    "57014": "statement timeout",
    "0A000": "cached statement invalidated by a schema change",
}
# SQLSTATE prefixes and codes that would fail every event: the database, not the event, is at fault.
OUTAGE_PREFIXES = ("08", "53", "57P", "58", "28", "3D", "XX")
OUTAGE_STATES = {"25006", "42P01", "42501", "42703", "42883", "55000", "55006"}


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE carried by a SQLAlchemy or asyncpg exception, if any."""
    for candidate in (error, getattr(error, "orig", None), getattr(error, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def classify(error: BaseException) -> Exception:
    """Return the intent-carrying exception for a failure raised while applying an event."""
    if isinstance(error, Outage | TransientError):
        return error
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return Outage(f"database connection lost ({type(error.orig).__name__})")
    if isinstance(error, OSError | ConnectionError | asyncio.TimeoutError | TimeoutError):
        return Outage(f"database unreachable ({type(error).__name__})")
    if isinstance(error, sa_exc.TimeoutError):
        return Outage("no database connection available in time (pool timeout)")
    if isinstance(error, sa_exc.InterfaceError):
        return Outage(f"database interface error ({type(error.orig).__name__})")
    if isinstance(error, asyncpg.InterfaceError):
        # Raised by asyncpg itself (the hot path bypasses SQLAlchemy): a closed connection.
        return Outage(f"database interface error ({type(error).__name__})")
    state = sqlstate_of(error)
    if state is not None:
        if state in TRANSIENT_STATES:
            return TransientError(f"{TRANSIENT_STATES[state]} (SQLSTATE {state})")
        if state in OUTAGE_STATES or state.startswith(OUTAGE_PREFIXES):
            return Outage(f"database cannot apply any event (SQLSTATE {state})")
        return TransientError(f"database error SQLSTATE {state}")
    # NOTE: only the class name: str(error) may quote SQL parameters, i.e. user content.
    return TransientError(f"unexpected {type(error).__name__} while applying the event")


def database_unreachable(error: BaseException) -> str | None:
    """Why the database cannot be used now (an outage, worth waiting for), else None."""
    intent = classify(error)
    return str(intent) if isinstance(intent, Outage) else None
