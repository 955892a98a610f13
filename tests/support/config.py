"""Settings and schema for workers under test."""

from __future__ import annotations

from tests.support.services import create_database
from worker.db.schema import build_schema
from worker.settings import Settings


def make_settings(database_url: str, amqp_url: str, **overrides: object) -> Settings:
    """Settings for a worker under test: short retry schedules, explicit URLs, no .env file."""
    values: dict[str, object] = {
        "database_url": database_url,
        "amqp_url": amqp_url,
        "retry_delays_s": [1],
        "unknown_user_delays_s": [1, 1],
        "retry_in_place": 2,
        "retry_backoff_ms": 10,
        "db_pool_size": 5,
        "prefetch": 16,
        "shutdown_timeout_s": 10,
        "outage_probe_interval_s": 0.2,
        "log_format": "console",
        # Several workers share this machine in tests: no fixed HTTP port unless a test asks.
        "http_port": 0,
        # The queue policy is applied by `worker policy apply`; tests that need it apply it.
        "require_queue_policy": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def migrated_database(name: str) -> str:
    url = await create_database(name)
    await build_schema(Settings(_env_file=None, database_url=url))
    return url
