"""The Unit of Work's connection: set-based statements on asyncpg, ORM work on a session, one transaction.

SQLAlchemy's `session.execute(text(...))` costs about 300 µs of CPU per statement before
asyncpg sees it; a batch runs about ten. The hot path therefore sends its fixed,
array-parameter statements (`$1::uuid[]`, …) to the asyncpg connection SQLAlchemy pooled,
inside the transaction SQLAlchemy began on it, so commit, rollback, pool accounting and
invalidation stay SQLAlchemy's. The ORM (`Repository.add`) works on a session bound
to the same connection, created only when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


class Transaction:
    """One pooled connection and its open transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self._driver: Any = None
        self._session: AsyncSession | None = None

    async def fetch(self, query: str, *args: Any) -> Sequence[Any]:
        """Run one statement with positional parameters; return its rows (indexable by position)."""
        if self._driver is None:
            # NOTE: SQLAlchemy's asyncpg adapter opens the driver's transaction lazily, with the
            # first statement it runs. That one goes through SQLAlchemy; the rest go to asyncpg
            # directly and land in the same transaction.
            rows = (await self.connection.exec_driver_sql(query, args)).all()
            self._driver = (await self.connection.get_raw_connection()).driver_connection
            return rows
        return await self._driver.fetch(query, *args)

    @property
    def session(self) -> AsyncSession:
        """An ORM session on this connection and transaction (it never commits on its own)."""
        if self._session is None:
            self._session = AsyncSession(bind=self.connection, expire_on_commit=False, autoflush=False)
        return self._session

    async def commit(self) -> None:
        if self._session is not None:
            await self._session.flush()
        await self.connection.commit()

    async def close(self, *, rollback: bool) -> None:
        """Roll back unless committed, give the connection back; a broken one is thrown away."""
        try:
            if self._session is not None:
                await self._session.close()
            if rollback:
                await self.connection.rollback()
        finally:
            if self._driver is not None and self._driver.is_closed():
                await self.connection.invalidate()
            await self.connection.close()
