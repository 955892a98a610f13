"""Every endpoint against the real database: what it answers, and the problems it answers with."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from tests.support.api import ADMIN, ADMIN_TOKEN, bearer
from tests.support.db import scalar
from worker.api.app import create_app
from worker.settings import Settings

PROBLEM = "application/problem+json"


async def _new_user(client, **fields) -> dict:
    body = {"email": f"{uuid.uuid4()}@api.test", "password": "correct horse battery", **fields}
    response = await client.post("/users", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def _new_key(client, user_id: str, **fields) -> dict:
    response = await client.post(f"/users/{user_id}/api-keys", json={"name": "gateway", **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def test_creating_a_user_stores_an_argon2id_hash_and_answers_its_counters(client, db) -> None:
    user = await _new_user(client, tier="pro", tokens_limit=5_000_000_000)
    assert user["tier"] == "pro" and user["tokens_used"] == 0 and user["tokens_limit"] == 5_000_000_000
    stored = await scalar(db, "SELECT hashed_password FROM users WHERE id = :id", id=user["id"])
    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, "correct horse battery")


async def test_a_taken_email_is_a_conflict(client) -> None:
    user = await _new_user(client)
    response = await client.post("/users", json={"email": user["email"], "password": "another one!"}, headers=ADMIN)
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/email-taken"


async def test_a_user_reads_itself_with_its_remaining_tokens(client, db) -> None:
    user = await _new_user(client, tokens_limit=100)
    await _spend(db, user["id"], 30)
    key = await _new_key(client, user["id"])
    response = await client.get(f"/users/{user['id']}", headers=bearer(key["key"]))
    assert response.status_code == 200
    assert response.json() | {"created_at": None} == {
        "id": user["id"], "email": user["email"], "tier": "free", "tokens_used": 30, "tokens_limit": 100,
        "tokens_remaining": 70, "cost_used": "0", "cost_limit_usd": None, "budget_period": "none", "created_at": None,
    }


@pytest.mark.parametrize(("used", "exceeded", "remaining"), [(99, False, 1), (100, True, 0), (150, True, 0)])
async def test_the_quota_says_whether_the_limit_is_reached(client, db, used, exceeded, remaining) -> None:
    user = await _new_user(client, tokens_limit=100)
    await _spend(db, user["id"], used)
    response = await client.get(f"/users/{user['id']}/quota", headers=ADMIN)
    assert response.json() == {
        "tokens_used": used, "tokens_limit": 100, "tokens_remaining": remaining, "exceeded": exceeded,
        "period": {"kind": "none", "start": None, "end": None},
        "limits": [{"kind": "tokens", "used": used, "limit": 100, "remaining": remaining, "exceeded": exceeded,
                    "thresholds_crossed": []}],
    }


async def test_a_created_conversation_is_listed_and_read_back(client) -> None:
    user = await _new_user(client)
    created = await client.post(f"/users/{user['id']}/conversations", json={"model": "gpt-x", "title": "Plans"},
                                headers=ADMIN)
    assert created.status_code == 201
    conversation = created.json()
    assert conversation["total_tokens"] == 0 and conversation["user_id"] == user["id"]
    listed = (await client.get(f"/users/{user['id']}/conversations", headers=ADMIN)).json()
    assert [c["id"] for c in listed["items"]] == [conversation["id"]] and listed["next_cursor"] is None
    read = await client.get(f"/conversations/{conversation['id']}", headers=ADMIN)
    assert read.json() == conversation
    messages = await client.get(f"/conversations/{conversation['id']}/messages", headers=ADMIN)
    assert messages.json() == {"items": [], "next_cursor": None}


async def test_an_issued_key_is_shown_once_and_only_its_hash_is_stored(client, db) -> None:
    user = await _new_user(client)
    key = await _new_key(client, user["id"], expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    assert key["key"].startswith("lpw_") and len(key["key"]) >= 4 + 43
    stored = await scalar(db, "SELECT key_hash FROM api_keys WHERE id = :id", id=key["id"])
    assert key["key"] not in stored and len(stored) == 64
    listed = (await client.get(f"/users/{user['id']}/api-keys", headers=bearer(key["key"]))).json()
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0] and "key_hash" not in listed[0]


async def test_a_revoked_key_is_refused_on_the_next_request(client) -> None:
    user = await _new_user(client)
    key = await _new_key(client, user["id"])
    assert (await client.get(f"/users/{user['id']}/quota", headers=bearer(key["key"]))).status_code == 200
    assert (await client.delete(f"/api-keys/{key['id']}", headers=bearer(key["key"]))).status_code == 204
    refused = await client.get(f"/users/{user['id']}/quota", headers=bearer(key["key"]))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    listed = (await client.get(f"/users/{user['id']}/api-keys", headers=ADMIN)).json()
    assert listed[0]["is_active"] is False


async def test_usage_sums_messages_and_usage_records_by_day_and_by_model(client, db) -> None:
    user = await _new_user(client)
    conversation = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO conversations (id, user_id, model) VALUES (:c, :u, 'chat-a')"),
                           {"c": conversation, "u": user["id"]})
        for at, model, prompt, completion in [("2026-11-01T10:00Z", None, 10, 5), ("2026-11-02T10:00Z", "chat-b", 1, 2)]:
            await conn.execute(
                text("INSERT INTO messages (id, conversation_id, role, content, model, prompt_tokens,"
                     " completion_tokens, created_at) VALUES (:id, :c, 'user', 'x', :m, :p, :o, :at)"),
                {"id": uuid.uuid4(), "c": conversation, "m": model, "p": prompt, "o": completion,
                 "at": datetime.fromisoformat(at)},
            )
        await conn.execute(
            text("INSERT INTO usage_records (id, event_source, event_id, user_id, model, prompt_tokens, completion_tokens,"
                 " recorded_at) VALUES (gen_random_uuid(), 't', :e, :u, 'embed', 100, 0, '2026-11-02T23:59Z')"),
            {"e": str(uuid.uuid4()), "u": user["id"]},
        )
    by_day = (await client.get(f"/users/{user['id']}/usage", params={"group_by": "day"}, headers=ADMIN)).json()
    assert [(g["key"], g["total_tokens"]) for g in by_day["groups"]] == [("2026-11-01", 15), ("2026-11-02", 103)]
    assert by_day["total_tokens"] == 118
    by_model = (await client.get(f"/users/{user['id']}/usage?group_by=model", headers=ADMIN)).json()
    assert {g["key"]: g["total_tokens"] for g in by_model["groups"]} == {"chat-a": 15, "chat-b": 3, "embed": 100}
    window = await client.get(f"/users/{user['id']}/usage",
                              params={"from": "2026-11-02T00:00:00Z", "to": "2026-11-03T00:00:00Z"}, headers=ADMIN)
    assert window.json()["total_tokens"] == 103


@pytest.mark.parametrize(
    ("path", "problem_type"),
    [
        ("/users/not-a-uuid", "/problems/invalid-input"),
        ("/users/{user}/conversations?limit=101", "/problems/invalid-input"),
        ("/users/{user}/conversations?limit=0", "/problems/invalid-input"),
        ("/users/{user}/conversations?cursor=bm90IGEgY3Vyc29y", "/problems/invalid-cursor"),
        ("/users/{user}/conversations?cursor=%%%", "/problems/invalid-input"),
        ("/users/{user}/messages/search?q=a%00b", "/problems/invalid-input"),
        ("/conversations/{conversation}/messages?cursor=WzEsMl0", "/problems/invalid-cursor"),
        ("/users/{user}/usage?group_by=week", "/problems/invalid-input"),
        ("/users/{user}/usage?from=yesterday", "/problems/invalid-input"),
        ("/users/{user}/messages/search?q=", "/problems/invalid-input"),
        ("/users/{user}/messages/search", "/problems/invalid-input"),
        ("/users/{user}/messages/search?q=" + "a" * 257, "/problems/invalid-input"),
    ],
)
async def test_invalid_input_is_a_422_problem(client, world, path, problem_type) -> None:
    response = await client.get(path.format(user=world.owner, conversation=world.conversation), headers=ADMIN)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == problem_type and body["status"] == 422 and body["title"]


async def test_a_validation_problem_never_echoes_the_input(client) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    response = await client.post("/users", json={"email": secret, "password": "short"}, headers=ADMIN)
    assert response.status_code == 422 and secret not in response.text and "short" not in response.text


async def test_unknown_query_parameters_are_ignored(client, world) -> None:
    response = await client.get(f"/users/{world.owner}/quota?whatever=1", headers=ADMIN)
    assert response.status_code == 200


async def test_a_body_over_64_kib_is_refused_with_413(client, world) -> None:
    body = {"model": "m", "title": "x" * (64 * 1024)}
    response = await client.post(f"/users/{world.owner}/conversations", json=body, headers=ADMIN)
    assert response.status_code == 413 and response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/payload-too-large"


async def test_a_chunked_body_over_64_kib_is_refused_with_413(client, world) -> None:
    async def chunks():
        for _ in range(9):
            yield b"x" * 8192

    response = await client.post(f"/users/{world.owner}/conversations", content=chunks(),
                                 headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 413


async def test_an_unknown_user_and_conversation_are_404_problems(client) -> None:
    for path in (f"/users/{uuid.uuid4()}/quota", f"/conversations/{uuid.uuid4()}"):
        response = await client.get(path, headers=ADMIN)
        assert response.status_code == 404 and response.json()["type"] == "/problems/not-found"


async def test_revoking_an_unknown_key_is_404(client) -> None:
    assert (await client.delete(f"/api-keys/{uuid.uuid4()}", headers=ADMIN)).status_code == 404


async def test_probes_answer_and_metrics_are_labelled_by_route_template(client, world) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}
    await client.get(f"/users/{world.owner}/quota", headers=ADMIN)
    metrics = (await client.get("/metrics")).text
    assert 'api_requests_total{method="GET",route="/users/{user_id}/quota",status="200"}' in metrics
    assert str(world.owner) not in metrics


async def test_every_response_carries_a_request_id_and_echoes_a_plain_one(client) -> None:
    assert len((await client.get("/livez")).headers["x-request-id"]) == 32
    assert (await client.get("/livez", headers={"X-Request-ID": "gw-123"})).headers["x-request-id"] == "gw-123"
    assert (await client.get("/livez", headers={"X-Request-ID": "bad id\n"})).headers["x-request-id"] != "bad id\n"


async def test_the_openapi_schema_and_docs_are_served(client) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/users/{user_id}/quota" in schema["paths"]
    assert (await client.get("/docs")).status_code == 200


async def _spend(db, user_id: str, tokens: int) -> None:
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET tokens_used = :t WHERE id = :id"), {"t": tokens, "id": user_id})


async def test_an_unreachable_database_is_a_503_problem_and_not_ready(database_url) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{closed_port}")
    assert unreachable != database_url
    app = create_app(Settings(_env_file=None, database_url=unreachable, api_admin_token=ADMIN_TOKEN,
                              db_command_timeout_s=2))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
            response = await client.get(f"/users/{uuid.uuid4()}/quota", headers=ADMIN)
            assert response.status_code == 503, response.text
            assert response.json()["type"] == "/problems/unavailable" and response.headers["retry-after"] == "1"
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/livez")).status_code == 200
    finally:
        await app.state.engine.dispose()
