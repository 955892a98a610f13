"""The API's numbers are the ledger of events the real worker applied (and acknowledged)."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import text

from tests.support.amqp import Gateway, queue_depth
from tests.support.api import ADMIN, bearer, insert_api_key
from tests.support.db import create_user
from tests.support.events import message_created, tokens_of, usage_recorded
from tests.support.waiting import eventually


async def test_quota_usage_and_conversations_equal_the_events_the_worker_applied(client, db, worker, amqp_url) -> None:
    user = await create_user(db)
    _, key = await insert_api_key(db, user)
    chats = [uuid.uuid4(), uuid.uuid4()]
    events = []
    for i in range(12):
        events.append(message_created(
            user, conversation_id=chats[i % 2], prompt_tokens=10 + i, completion_tokens=i,
            content=f"message number {i}", model="chat-a" if i % 3 else "chat-b",
            created_at=f"2026-11-{10 + i % 2}T07:00:{i:02d}Z",
        ))
    for i in range(5):
        events.append(usage_recorded(user, prompt_tokens=100 * i, completion_tokens=1, model="embed-z",
                                     conversation_id=chats[0]))
    duplicate = events[3]
    ledger = sum(tokens_of(e) for e in events)
    async with Gateway(amqp_url) as gateway:
        await gateway.publish_many([*events, duplicate])

    async def quota_reached():
        quota = (await client.get(f"/users/{user}/quota", headers=bearer(key))).json()
        return quota if quota["tokens_used"] >= ledger else None

    quota = await eventually(quota_reached)
    await eventually(lambda: _queue_empty(amqp_url))
    quota = (await client.get(f"/users/{user}/quota", headers=bearer(key))).json()
    assert quota["tokens_used"] == ledger
    assert quota["tokens_remaining"] == 100_000 - ledger and quota["exceeded"] is False

    usage = (await client.get(f"/users/{user}/usage?group_by=model", headers=bearer(key))).json()
    assert usage["total_tokens"] == ledger
    by_model: Counter[str] = Counter()
    for event in events:
        by_model[event["data"]["model"]] += tokens_of(event)
    assert {g["key"]: g["total_tokens"] for g in usage["groups"]} == dict(by_model)
    by_day = (await client.get(f"/users/{user}/usage", headers=ADMIN)).json()
    assert sum(g["total_tokens"] for g in by_day["groups"]) == ledger

    user_row = (await client.get(f"/users/{user}", headers=bearer(key))).json()
    assert user_row["tokens_used"] == ledger

    listed = (await client.get(f"/users/{user}/conversations", headers=bearer(key))).json()["items"]
    assert {c["id"] for c in listed} == {str(c) for c in chats}
    for chat in chats:
        sent = [e for e in events if e["type"] == "message.created" and e["data"]["conversation_id"] == str(chat)]
        conversation = (await client.get(f"/conversations/{chat}", headers=bearer(key))).json()
        # A usage record naming the conversation counts towards it too.
        in_chat = [e for e in events if e["data"].get("conversation_id") == str(chat)]
        assert conversation["total_tokens"] == sum(tokens_of(e) for e in in_chat)
        messages = (await client.get(f"/conversations/{chat}/messages?limit=4", headers=bearer(key))).json()
        page = messages["items"]
        while messages["next_cursor"]:
            messages = (await client.get(f"/conversations/{chat}/messages",
                                         params={"limit": 4, "cursor": messages["next_cursor"]}, headers=ADMIN)).json()
            page += messages["items"]
        expected = sorted(sent, key=lambda e: (e["data"]["created_at"], e["data"]["message_id"]))
        assert [m["id"] for m in page] == [e["data"]["message_id"] for e in expected]
        assert [m["content"] for m in page] == [e["data"]["content"] for e in expected]
        assert [m["prompt_tokens"] + m["completion_tokens"] for m in page] == [tokens_of(e) for e in expected]


async def test_an_exceeded_limit_shows_once_the_worker_has_counted_past_it(client, db, worker, amqp_url) -> None:
    user = await create_user(db)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET tokens_limit = 50 WHERE id = :id"), {"id": user})
    async with Gateway(amqp_url) as gateway:
        await gateway.publish(usage_recorded(user, prompt_tokens=60))

    async def exceeded():
        quota = (await client.get(f"/users/{user}/quota", headers=ADMIN)).json()
        return quota if quota["exceeded"] else None

    quota = await eventually(exceeded)
    assert {name: quota[name] for name in ("tokens_used", "tokens_limit", "tokens_remaining", "exceeded")} == {
        "tokens_used": 60, "tokens_limit": 50, "tokens_remaining": 0, "exceeded": True}
    assert quota["limits"][0] | {"thresholds_crossed": []} == {
        "kind": "tokens", "used": 60, "limit": 50, "remaining": 0, "exceeded": True, "thresholds_crossed": []}


async def _queue_empty(amqp_url: str) -> bool:
    return await queue_depth(amqp_url, "llm.events.worker") == 0


