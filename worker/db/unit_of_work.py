"""Unit of Work: one pooled connection, one transaction; leaving without `commit()` rolls back."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.db.repositories import (
    ApiKeyRepository,
    ConversationRepository,
    InboxRepository,
    MessageRepository,
    OutboxRepository,
    PriceRepository,
    QuotaRepository,
    UsagePeriodRepository,
    UsageRecordRepository,
    UserRepository,
)
from worker.db.transaction import Transaction
from worker.service.ports import AbstractUnitOfWork


class UnitOfWork(AbstractUnitOfWork):
    """Owns one connection and its transaction, and hands it to every repository."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.committed = False

    async def __aenter__(self) -> UnitOfWork:
        self.sql = Transaction(await self._engine.connect())
        self.committed = False
        self.inbox = InboxRepository(self.sql)
        self.users = UserRepository(self.sql)
        self.conversations = ConversationRepository(self.sql)
        self.messages = MessageRepository(self.sql)
        self.usage_records = UsageRecordRepository(self.sql)
        self.api_keys = ApiKeyRepository(self.sql)
        self.prices = PriceRepository(self.sql)
        self.usage_periods = UsagePeriodRepository(self.sql)
        self.quota = QuotaRepository(self.sql)
        self.outbox = OutboxRepository(self.sql)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.sql.close(rollback=not self.committed)
        except Exception:
            # A dead connection cannot roll back; the server discards the transaction anyway.
            if exc is None:
                raise

    @property
    def session(self):  # noqa: ANN201 - AsyncSession, for the ORM side of the repositories
        return self.sql.session

    async def commit(self) -> None:
        await self.sql.commit()
        self.committed = True

    async def rollback(self) -> None:
        await self.sql.connection.rollback()
