"""Keyset pages: every row that existed when paging began is seen exactly once, whatever is inserted meanwhile."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from tests.support.api import ADMIN
from tests.support.db import create_user

ROWS = 150


async def _pages(client, path: str, limit: int, pause: asyncio.Event | None = None) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        await asyncio.sleep(0.005)  # let the concurrent writer in between pages
        if cursor is None:
            return seen


async def _keep_inserting(db, statement: str, params: dict, stop: asyncio.Event) -> int:
    inserted = 0
    while not stop.is_set():
        async with db.begin() as conn:
            await conn.execute(text(statement), {**params, "id": uuid.uuid4()})
        inserted += 1
        await asyncio.sleep(0.002)
    return inserted


async def test_conversation_pages_are_stable_under_concurrent_inserts(client, db) -> None:
    user = await create_user(db)
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO conversations (id, user_id, model, updated_at)"
                " SELECT gen_random_uuid(), :u, 'm', now() - (i % 40) * interval '1 minute'"
                " FROM generate_series(1, :n) AS i"
            ),
            {"u": user, "n": ROWS},
        )
        before = {str(r[0]) for r in await conn.execute(text("SELECT id FROM conversations WHERE user_id = :u"),
                                                        {"u": user})}
    stop = asyncio.Event()
    writer = asyncio.create_task(_keep_inserting(
        db, "INSERT INTO conversations (id, user_id, model) VALUES (:id, :u, 'm')", {"u": user}, stop))
    try:
        seen = await _pages(client, f"/users/{user}/conversations", limit=7)
    finally:
        stop.set()
    assert await writer > 0
    assert len(seen) == len(set(seen)), "a row came twice"
    assert before <= set(seen), "a row was skipped"


async def test_message_pages_are_stable_under_concurrent_inserts(client, db) -> None:
    user, conversation = await create_user(db), uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO conversations (id, user_id, model) VALUES (:c, :u, 'm')"),
                           {"c": conversation, "u": user})
        # Many rows share a timestamp: the id breaks the tie.
        await conn.execute(
            text(
                "INSERT INTO messages (id, conversation_id, role, content, created_at)"
                " SELECT gen_random_uuid(), :c, 'user', 'm' || i, now() - (i % 10) * interval '1 second'"
                " FROM generate_series(1, :n) AS i"
            ),
            {"c": conversation, "n": ROWS},
        )
        before = [str(r[0]) for r in await conn.execute(
            text("SELECT id FROM messages WHERE conversation_id = :c ORDER BY created_at, id"), {"c": conversation})]
    stop = asyncio.Event()
    writer = asyncio.create_task(_keep_inserting(
        db, "INSERT INTO messages (id, conversation_id, role, content) VALUES (:id, :c, 'user', 'new')",
        {"c": conversation}, stop))
    try:
        seen = await _pages(client, f"/conversations/{conversation}/messages", limit=9)
    finally:
        stop.set()
    assert await writer > 0
    assert len(seen) == len(set(seen)), "a row came twice"
    assert seen[: len(before)] == before, "the rows that existed come first, in order, none skipped"
