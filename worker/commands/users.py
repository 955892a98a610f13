"""`worker users create`: adds a user (the worker counts tokens only for existing users)."""

from __future__ import annotations

import asyncio
import uuid

from worker.db.engine import create_engine, create_session_factory
from worker.db.models import User
from worker.db.unit_of_work import UnitOfWork
from worker.settings import Settings

# The worker never authenticates anyone; "!" can never match a password hash.
UNUSABLE_PASSWORD = "!"


async def create_user(settings: Settings, email: str, tokens_limit: int | None, tier: str | None) -> uuid.UUID:
    engine = create_engine(settings, pool_size=1)
    try:
        async with UnitOfWork(create_session_factory(engine)) as uow:
            user = User(id=uuid.uuid4(), email=email, hashed_password=UNUSABLE_PASSWORD)
            if tokens_limit is not None:
                user.tokens_limit = tokens_limit
            if tier is not None:
                user.tier = tier
            uow.users.add(user)
            await uow.commit()
            return user.id
    finally:
        await engine.dispose()


def run(settings: Settings, email: str, tokens_limit: int | None, tier: str | None) -> int:
    print(asyncio.run(create_user(settings, email, tokens_limit, tier)))
    return 0
