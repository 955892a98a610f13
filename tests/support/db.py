"""Database helpers for assertions: users, counters, rows."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def create_user(db: AsyncEngine, *, email: str | None = None, tokens_used: int = 0) -> uuid.UUID:
    user_id = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, hashed_password, tokens_used) VALUES (:id, :email, '!', :used)"),
            {"id": user_id, "email": email or f"{user_id}@example.test", "used": tokens_used},
        )
    return user_id


async def create_users(db: AsyncEngine, count: int) -> list[uuid.UUID]:
    return [await create_user(db) for _ in range(count)]


async def scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def rows(db: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return list((await conn.execute(text(sql), params)).mappings())


async def tokens_used(db: AsyncEngine, user_id: uuid.UUID) -> int:
    return await scalar(db, "SELECT tokens_used FROM users WHERE id = :id", id=user_id)
