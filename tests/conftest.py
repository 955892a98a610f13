"""Fixtures: one private database per test run (schema from the migrations), one vhost per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.config import make_settings, migrated_database
from tests.support.db import create_user
from tests.support.services import create_vhost, delete_vhost, drop_database, unique_name
from worker.runtime.app import Worker, start_worker, stop_worker
from worker.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    fast_path = Settings(_env_file=None).amqp_fast_path
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
        if not fast_path and item.get_closest_marker("fast_path"):
            item.add_marker(pytest.mark.skip(reason="WORKER_AMQP_FAST_PATH=false: the worker runs aiormq's own path"))


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = unique_name("aiworker_test")
    url = await migrated_database(name)
    yield url
    await drop_database(name)


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def amqp_url() -> AsyncIterator[str]:
    name = unique_name("aiworker_test")
    url = await create_vhost(name)
    yield url
    await delete_vhost(name)


@pytest.fixture
def settings(database_url: str, amqp_url: str) -> Settings:
    return make_settings(database_url, amqp_url)


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    running = await start_worker(settings)
    yield running
    await stop_worker(running, settings)


@pytest.fixture
async def user_id(db: AsyncEngine):
    return await create_user(db)
