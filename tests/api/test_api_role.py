"""ops/postgres's API role: every endpoint works under it, and it can do nothing more."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.api import ADMIN, ADMIN_TOKEN, bearer
from tests.support.roles import Roles, apply_worker_grants, drop_roles, new_roles, psql
from tests.support.services import ADMIN_DSN, create_database, drop_database, unique_name
from worker.api.app import create_app
from worker.db import schema
from worker.settings import Settings


@dataclass(frozen=True)
class ApiRole:
    roles: Roles
    name: str
    password: str

    def url(self) -> str:
        owner_url = self.roles.sqlalchemy_url(self.roles.owner)
        return owner_url.replace(f"{self.roles.owner}:{self.roles.owner_password}@", f"{self.name}:{self.password}@")


@pytest.fixture(scope="module")
async def api_role() -> AsyncIterator[ApiRole]:
    """Deploy order: roles (with the API role) → migrate as the owner → worker and API grants as the owner."""
    name = unique_name("aiworker_apirole")
    roles = new_roles(name)
    api = ApiRole(roles, unique_name("aiw_api"), secrets.token_urlsafe(16))
    admin_url = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    try:
        await create_database(name)
        await psql(admin_url, "roles.sql", owner_role=roles.owner, owner_password=roles.owner_password,
                   worker_role=roles.worker, worker_password=roles.worker_password,
                   api_role=api.name, api_password=api.password)
        owner = Settings(_env_file=None, database_url=roles.sqlalchemy_url(roles.owner))
        await asyncio.to_thread(schema.upgrade, owner)
        await apply_worker_grants(roles)
        await psql(roles.libpq_url(roles.owner), "api-grants.sql", api_role=api.name)
        yield api
    finally:
        await drop_database(name)
        await drop_roles(roles.worker, roles.owner)
        await drop_roles(api.name)


async def test_every_endpoint_works_as_the_api_role(api_role: ApiRole) -> None:
    engine = create_async_engine(api_role.url(), pool_size=2)
    app = create_app(Settings(_env_file=None, database_url=api_role.url(), api_admin_token=ADMIN_TOKEN),
                     engine=engine)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
            user = (await client.post("/users", json={"email": "role@api.test", "password": "a long password"},
                                      headers=ADMIN)).json()
            key = (await client.post(f"/users/{user['id']}/api-keys", json={"name": "k"}, headers=ADMIN)).json()
            as_user = bearer(key["key"])
            conversation = await client.post(f"/users/{user['id']}/conversations", json={"model": "m"},
                                             headers=as_user)
            assert conversation.status_code == 201, conversation.text
            conversation_id = conversation.json()["id"]
            for path in (
                f"/users/{user['id']}",
                f"/users/{user['id']}/quota",
                f"/users/{user['id']}/conversations",
                f"/conversations/{conversation_id}",
                f"/conversations/{conversation_id}/messages",
                f"/users/{user['id']}/usage?group_by=day",
                f"/users/{user['id']}/usage?group_by=model",
                f"/users/{user['id']}/usage?group_by=month",
                f"/users/{user['id']}/usage?group_by=period",
                f"/users/{user['id']}/messages/search?q=anything",
                f"/users/{user['id']}/api-keys",
                "/readyz",
            ):
                response = await client.get(path, headers=as_user)
                assert response.status_code == 200, (path, response.text)
            budget = {"tier": "pro", "tokens_limit": 10, "cost_limit_usd": "1.5", "budget_period": "month"}
            patched = await client.patch(f"/users/{user['id']}", json=budget, headers=ADMIN)
            assert patched.status_code == 200, patched.text
            quota = await client.get(f"/users/{user['id']}/quota", headers=as_user)
            assert quota.status_code == 200 and quota.json()["period"]["kind"] == "month"
            assert (await client.delete(f"/api-keys/{key['id']}", headers=as_user)).status_code == 204
            assert (await client.get(f"/users/{user['id']}/quota", headers=as_user)).status_code == 401
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT hashed_password FROM users",
        "UPDATE users SET tokens_used = 0",
        "UPDATE users SET cost_used = 0",
        "DELETE FROM usage_periods",
        "UPDATE usage_periods SET period_start = '2000-01-01'",
        "INSERT INTO quota_crossings (event_id, user_id, period, limit_kind, limit_value, threshold, usage)"
        " VALUES (gen_random_uuid(), gen_random_uuid(), 'none', 'tokens', 1, 80, 1)",
        "SELECT * FROM model_prices",
        "SELECT * FROM outbox",
        "DELETE FROM messages",
        "DELETE FROM api_keys",
        "SELECT * FROM processed_events",
        "UPDATE api_keys SET key_hash = 'x'",
        "INSERT INTO messages (id, conversation_id, role, content) VALUES (gen_random_uuid(), gen_random_uuid(), 'user', 'x')",
        "CREATE TABLE intruder (id int)",
    ],
)
async def test_the_api_role_cannot_step_outside_what_the_api_uses(api_role: ApiRole, statement: str) -> None:
    conn = await asyncpg.connect(api_role.url().replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


