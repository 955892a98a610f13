"""Unit of Work: one session, one transaction; leaving without `commit()` rolls back."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from worker.db.repositories import (
    ApiKeyRepository,
    ConversationRepository,
    InboxRepository,
    MessageRepository,
    UsageRecordRepository,
    UserRepository,
)
from worker.service.ports import AbstractUnitOfWork


class UnitOfWork(AbstractUnitOfWork):
    """Owns one `AsyncSession` and hands it to every repository."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        self.committed = False

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        self.committed = False
        self.inbox = InboxRepository(self.session)
        self.users = UserRepository(self.session)
        self.conversations = ConversationRepository(self.session)
        self.messages = MessageRepository(self.session)
        self.usage_records = UsageRecordRepository(self.session)
        self.api_keys = ApiKeyRepository(self.session)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if not self.committed:
                await self.session.rollback()
        except Exception:
            # A dead connection cannot roll back; the server discards the transaction anyway.
            if exc is None:
                raise
        finally:
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        self.committed = True

    async def rollback(self) -> None:
        await self.session.rollback()
