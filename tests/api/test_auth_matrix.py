"""Who may call what: admin, the owner's key, another user's key, a revoked, an expired or no key, on every route."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.api import ADMIN_TOKEN, World, bearer, insert_api_key
from worker.api.app import create_app
from worker.settings import Settings


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    ok: int
    admin_only: bool = False
    body: dict[str, Any] | None = None


ROUTES = [
    Route("POST", "/users", 201, admin_only=True, body={"password": "long enough password"}),
    Route("GET", "/users/{owner}", 200),
    Route("PATCH", "/users/{owner}", 200, admin_only=True, body={"tier": "pro"}),
    Route("GET", "/users/{owner}/quota", 200),
    Route("GET", "/users/{owner}/conversations", 200),
    Route("POST", "/users/{owner}/conversations", 201, body={"model": "gpt-test"}),
    Route("GET", "/conversations/{conversation}", 200),
    Route("GET", "/conversations/{conversation}/messages", 200),
    Route("GET", "/users/{owner}/usage?group_by=model", 200),
    Route("GET", "/users/{owner}/messages/search?q=hello", 200),
    Route("POST", "/users/{owner}/api-keys", 201, admin_only=True, body={"name": "k"}),
    Route("GET", "/users/{owner}/api-keys", 200),
    Route("DELETE", "/api-keys/{target_key}", 204),
]
CALLERS = ["admin", "own key", "other user's key", "revoked key", "expired key", "no token", "bad token"]


def _expected(route: Route, who: str) -> int:
    if who in ("revoked key", "expired key", "no token", "bad token"):
        return 401
    if who == "admin":
        return route.ok
    if who == "other user's key":
        # Another user's resource looks like a missing one; creating users is no one's resource.
        return 403 if route.path == "/users" else 404
    return 403 if route.admin_only else route.ok


def _headers(world: World, who: str) -> dict[str, str]:
    tokens = {
        "admin": ADMIN_TOKEN,
        "own key": world.own_key,
        "other user's key": world.other_key,
        "revoked key": world.revoked_key,
        "expired key": world.expired_key,
        "bad token": "lpw_" + "A" * 43,
    }
    return bearer(tokens[who]) if who in tokens else {}


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_the_auth_matrix_holds_on_every_route(client, db, world: World, route: Route, who: str) -> None:
    target_key, _ = await insert_api_key(db, world.owner)
    path = route.path.format(owner=world.owner, conversation=world.conversation, target_key=target_key)
    body = route.body
    if route.path == "/users":
        body = {**body, "email": f"{uuid.uuid4()}@matrix.test"}
    response = await client.request(route.method, path, json=body, headers=_headers(world, who))
    assert response.status_code == _expected(route, who), response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    for secret in (ADMIN_TOKEN, world.own_key, world.other_key, world.revoked_key, world.expired_key):
        assert secret not in response.text


def test_the_matrix_covers_every_route_of_the_schema() -> None:
    app = create_app(Settings(_env_file=None, api_admin_token="x"))
    operations = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if path not in ("/livez", "/readyz")
    }
    covered = {(r.method, r.path.split("?")[0].replace("{owner}", "{user_id}")
                .replace("{conversation}", "{conversation_id}").replace("{target_key}", "{key_id}")) for r in ROUTES}
    assert covered == operations


async def test_another_users_key_cannot_revoke_a_key_and_the_key_keeps_working(client, world: World, db) -> None:
    key_id, key = await insert_api_key(db, world.owner)
    assert (await client.delete(f"/api-keys/{key_id}", headers=bearer(world.other_key))).status_code == 404
    assert (await client.get(f"/users/{world.owner}/quota", headers=bearer(key))).status_code == 200
