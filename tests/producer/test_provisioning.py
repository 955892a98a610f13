"""Users the gateway knows by another name: the CLI and the API create them under the producer's UUID rule."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.test_cli import cli
from tests.support.api import ADMIN_TOKEN, bearer
from tests.support.db import scalar
from worker.api.app import create_app
from worker.producer import project_uuid
from worker.settings import Settings

pytestmark = pytest.mark.integration


async def test_users_create_with_an_external_id_gives_the_id_the_callback_derives(db, settings) -> None:
    external = f"litellm-user-{uuid.uuid4().hex[:8]}"
    result = await cli(settings, "users", "create", "--email", f"{external}@cli.test", "--external-id", external)
    assert result.returncode == 0, result.stderr.decode()
    assert uuid.UUID(result.stdout.decode().strip()) == project_uuid(external)
    assert await scalar(db, "SELECT email FROM users WHERE id = :id", id=project_uuid(external)) == f"{external}@cli.test"
    again = await cli(settings, "users", "create", "--email", f"other-{external}@cli.test", "--external-id", external)
    assert again.returncode == 1 and b"external id already exists" in again.stderr


async def test_post_users_with_an_external_id_gives_the_same_id(database_url: str) -> None:
    app = create_app(Settings(_env_file=None, database_url=database_url, api_admin_token=ADMIN_TOKEN, db_pool_size=2))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
            external = str(uuid.uuid4())  # a UUID is taken as is
            body = {"email": f"{external}@api.test", "password": "a long passphrase", "external_id": external}
            created = await client.post("/users", json=body, headers=bearer(ADMIN_TOKEN))
            assert created.status_code == 201, created.text
            assert created.json()["id"] == external
            named = {"email": f"n-{external}@api.test", "password": "a long passphrase", "external_id": f"ada-{external}"}
            first = await client.post("/users", json=named, headers=bearer(ADMIN_TOKEN))
            assert first.status_code == 201 and first.json()["id"] == str(project_uuid(f"ada-{external}"))
            again = await client.post("/users", json={**named, "email": f"m-{external}@api.test"}, headers=bearer(ADMIN_TOKEN))
            assert again.status_code == 409 and again.json()["type"] == "/problems/external-id-taken"
    finally:
        await app.state.engine.dispose()
