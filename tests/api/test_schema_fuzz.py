"""Property-based fuzz of the whole OpenAPI schema against the running server: no 5xx, every response conforms."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.api import ADMIN_TOKEN, ApiServer
from worker.api.app import create_app
from worker.settings import Settings

# Small enough that the whole schema runs in well under a minute on two cores.
MAX_EXAMPLES = 15
OPERATIONS = [
    (method.upper(), path)
    for path, item in create_app(Settings(_env_file=None, api_admin_token="schema-only")).openapi()["paths"].items()
    for method in item
]


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(database_url, tmp_path_factory.mktemp("api") / "api.log").start()
    yield running
    assert running.terminate() == 0


@pytest.fixture(scope="module")
def api_schema(server: ApiServer):
    return schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_within_its_schema(api_schema, server: ApiServer, method: str, path: str) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case) -> None:
        case.call_and_validate(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            # A cursor is opaque: a schema-valid string this API never issued is rightly refused (422).
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )

    fuzz()
