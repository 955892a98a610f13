"""Fault-suite fixtures: private PostgreSQL and RabbitMQ, TCP proxies, worker fleets, scenarios."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.faults import scenario
from tests.faults.fleet import WorkerFleet
from tests.faults.scenario import REPORT_FILE, REPORTS, Scenario
from tests.support.config import migrated_database
from tests.support.pg_cluster import PgCluster
from tests.support.rabbit_node import RabbitNode
from tests.support.services import drop_database, unique_name
from tests.support.tcp_proxy import TcpProxy
from worker.settings import Settings

HERE = Path(__file__).resolve().parent
REPORT_NAME = "faults-last-report.json"
ScenarioFactory = Callable[..., Awaitable[Scenario]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault-injection scenarios (killed workers, dead services, cut links)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault-injection figures")
    for report in REPORTS:
        terminalreporter.write_line(report["summary"])
    for path in REPORT_FILE:
        terminalreporter.write_line(f"full report: {path}")


@pytest.fixture(scope="session")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / REPORT_NAME


# -- the shared PostgreSQL: a database of our own, so other suites' deliberate drift stays out of `verify`


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = unique_name("aiworker_faults")
    url = await migrated_database(name)
    yield url
    await drop_database(name)


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=3)
    yield engine
    await engine.dispose()


# -- private services --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="module")
async def private_database_url(pg_cluster: PgCluster) -> str:
    return await pg_cluster.migrated_database("aiworker")


@pytest.fixture(scope="module")
async def private_db(private_database_url: str) -> AsyncIterator[AsyncEngine]:
    # pool_pre_ping: the test's own sessions must survive the restarts the test causes.
    engine = create_async_engine(private_database_url, pool_size=2, pool_pre_ping=True)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def rabbit_node() -> Iterator[RabbitNode]:
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.cleanup()


@pytest.fixture
async def proxies() -> AsyncIterator[list[TcpProxy]]:
    """Proxies a test starts (it appends them); all closed at the end."""
    started: list[TcpProxy] = []
    yield started
    for proxy in started:
        await proxy.close()


# -- workers and scenarios ---------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[WorkerFleet]:
    workers = WorkerFleet(tmp_path)
    try:
        yield workers
    finally:
        workers.kill_all()


@pytest.fixture
def new_scenario(report_path: Path, request: pytest.FixtureRequest, fleet: WorkerFleet) -> ScenarioFactory:
    """Builds the test's scenario and declares its topology: workers get `settings`, else the fault
    settings for the checker's own URLs with `overrides`."""

    async def build(db: AsyncEngine, database_url: str, amqp_url: str, settings: Settings | None = None,
                    **overrides: object) -> Scenario:
        assert settings is None or not overrides, "either whole settings or overrides"
        worker_settings = settings or scenario.fault_settings(database_url, amqp_url, **overrides)
        built = Scenario(request.node.name, db, database_url, amqp_url, worker_settings, report_path, fleet)
        await built.declare_topology()
        return built

    return build


@pytest.fixture(autouse=True, params=[1, 32], ids=["per-event", "batched"])
def batch_mode(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run every fault with one event per transaction and with micro-batches."""
    scenario.BATCH_SIZE[0] = request.param
    yield request.param
    scenario.BATCH_SIZE[0] = 1
