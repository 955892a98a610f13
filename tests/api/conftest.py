"""The API over the session's migrated database, called in-process through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import ADMIN_TOKEN, World, make_world
from worker.api.app import create_app
from worker.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "api" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
async def api_app(database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(Settings(_env_file=None, database_url=database_url, api_admin_token=ADMIN_TOKEN, db_pool_size=5))
    yield app
    await app.state.engine.dispose()


@pytest.fixture
async def client(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://api.test") as client:
        yield client


@pytest.fixture
async def world(db: AsyncEngine) -> World:
    return await make_world(db)
