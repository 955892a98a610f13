"""The HTTP API under test: an app over the test database, callers and their keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.db import create_user
from worker.api.credentials import key_hash, new_api_key

ADMIN_TOKEN = "test-admin-token-" + "x" * 16


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)


async def insert_api_key(
    db: AsyncEngine, user_id: uuid.UUID, *, active: bool = True, expires_at: datetime | None = None
) -> tuple[uuid.UUID, str]:
    """A key stored the way the API stores one (its hash only); returns (id, plaintext)."""
    key_id, key = uuid.uuid4(), new_api_key()
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO api_keys (id, user_id, key_hash, name, is_active, expires_at)"
                " VALUES (:id, :user_id, :hash, 'test', :active, :expires)"
            ),
            {"id": key_id, "user_id": user_id, "hash": key_hash(key), "active": active, "expires": expires_at},
        )
    return key_id, key


@dataclass
class World:
    """Two users: `owner` with an active, a revoked and an expired key and a conversation; `other` with a key."""

    owner: uuid.UUID
    own_key: str
    revoked_key: str
    expired_key: str
    conversation: uuid.UUID
    other: uuid.UUID
    other_key: str


async def make_world(db: AsyncEngine) -> World:
    owner, other = await create_user(db), await create_user(db)
    conversation = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO conversations (id, user_id, model, title) VALUES (:id, :user_id, 'gpt-test', 'hi')"),
            {"id": conversation, "user_id": owner},
        )
    return World(
        owner=owner,
        own_key=(await insert_api_key(db, owner))[1],
        revoked_key=(await insert_api_key(db, owner, active=False))[1],
        expired_key=(await insert_api_key(db, owner, expires_at=datetime.now(UTC) - timedelta(seconds=1)))[1],
        conversation=conversation,
        other=other,
        other_key=(await insert_api_key(db, other))[1],
    )
