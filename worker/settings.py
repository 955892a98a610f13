"""All configuration, read once from `WORKER_*` environment variables (or a `.env` file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, PositiveInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Worker settings. Nothing here opens a connection: it is only data."""

    model_config = SettingsConfigDict(
        env_prefix="WORKER_",
        env_file=".env",
        extra="ignore",
        use_attribute_docstrings=True,
        # Mounted Kubernetes secrets: a file named like the variable (e.g. WORKER_DATABASE_URL).
        secrets_dir=os.environ.get("WORKER_SECRETS_DIR") or None,
    )

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/aiworker"
    """SQLAlchemy URL of the PostgreSQL database (driver `postgresql+asyncpg`)."""

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """RabbitMQ URL; `?name=` is added so the connection shows in the management UI."""

    amqp_management_url: str = "http://guest:guest@127.0.0.1:15672/"
    """RabbitMQ management API, for the queue policy (`worker policy`) and its start-up check."""

    require_queue_policy: bool = True
    """Refuse to start unless the worker queue's policy (delivery limit, at-least-once
    dead-lettering) is in force; see `worker policy apply`."""

    db_pool_size: PositiveInt = 10
    """Connections kept in the SQLAlchemy pool per process."""

    db_max_overflow: int = Field(default=0, ge=0)
    """Extra connections beyond the pool size under load (0: the pool is a hard cap)."""

    db_statement_cache_size: int = Field(default=100, ge=0)
    """asyncpg prepared-statement cache per connection; 0 behind PgBouncer in transaction mode."""

    db_statement_timeout_ms: PositiveInt = 15_000
    """Server-side `statement_timeout` for the worker's sessions (PostgreSQL setting)."""

    db_lock_timeout_ms: PositiveInt = 5_000
    """Server-side `lock_timeout`: a blocked row lock becomes a retryable error."""

    db_command_timeout_s: float = Field(default=30.0, gt=0)
    """Client-side deadline for one database command (asyncpg `command_timeout`)."""

    prefetch: PositiveInt = 1024
    """AMQP prefetch (basic.qos) of the consuming channel: deliveries in flight per process
    (keep it at least 2 × batch size × batch concurrency, so the next batches are already here)."""

    batch_size: PositiveInt = 256
    """Deliveries applied per database transaction (chosen from docs/BENCHMARKS.md); 1 is the strict
    one-event-per-transaction mode."""

    batch_wait_ms: int = Field(default=25, ge=0)
    """Longest an under-filled batch waits for company, and only while another batch is being applied
    (an idle worker applies what it has at once; docs/BENCHMARKS.md)."""

    batch_concurrency: PositiveInt | None = None
    """Batches applied at the same time per process, each on its own connection; unset: 2 when
    batching, the pool size when `WORKER_BATCH_SIZE=1` (single-event transactions need many in flight)."""

    @property
    def effective_batch_concurrency(self) -> int:
        if self.batch_concurrency is not None:
            return self.batch_concurrency
        return 2 if self.batch_size > 1 else self.db_pool_size

    heartbeat_s: int = Field(default=15, ge=1, le=60)
    """AMQP heartbeat; a dead link is noticed within about two of these."""

    publish_timeout_s: float = Field(default=10.0, gt=0)
    """How long a publish may wait for the broker's confirm before it counts as failed."""

    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    """Largest accepted message body, checked before parsing (contract default 4 MiB)."""

    max_content_bytes: PositiveInt = 1024 * 1024
    """Largest accepted `data.content` in UTF-8 bytes (contract default 1 MiB)."""

    amqp_fast_path: bool = True
    """Read deliveries with the worker's own frame decoder and file them inside aiormq's channel reader
    (docs/BENCHMARKS.md); false: aiormq's own path (no byte backpressure, undecodable properties close the
    connection), e.g. to rule the fast path out after a library upgrade."""

    max_in_flight_bytes: PositiveInt = 128 * 1024 * 1024
    """Message bytes one process holds unsettled; above it the worker stops reading from the broker until
    batches settle (backpressure: no delivery is refused for its size). Fits the 512 MiB pod limit."""

    batch_max_bytes: PositiveInt = 16 * 1024 * 1024
    """A batch closes at `WORKER_BATCH_SIZE` deliveries or at this many message bytes, whichever comes first."""

    retry_in_place: int = Field(default=3, ge=0, le=10)
    """In-place attempts for a transient database error before it goes to a delay queue."""

    retry_backoff_ms: PositiveInt = 50
    """Base of the jittered backoff between in-place attempts."""

    retry_delays_s: list[PositiveInt] = [1, 5, 30, 120]
    """Delay-queue schedule for transient errors; after the last step: `retries_exhausted`."""

    unknown_user_delays_s: list[PositiveInt] = [5, 30, 120, 600, 1800]
    """Delay-queue schedule for `unknown_user`; after the last step: dead-letter."""

    outage_probe_interval_s: float = Field(default=1.0, gt=0)
    """How often an unreachable database is probed while the worker is paused."""

    shutdown_timeout_s: float = Field(
        default=25.0,
        gt=0,
        # WORKER_SHUTDOWN_TIMEOUT is the name operators know from the runbook; both are read.
        validation_alias=AliasChoices("shutdown_timeout_s", "WORKER_SHUTDOWN_TIMEOUT_S", "WORKER_SHUTDOWN_TIMEOUT"),
    )
    """Seconds to finish in-flight events after SIGTERM (`WORKER_SHUTDOWN_TIMEOUT` or `…_S`); the rest is left for redelivery."""

    consumer_watchdog_s: float = Field(default=120.0, gt=0)
    """Exit non-zero when the consumer has not been restored within this time (the orchestrator restarts the pod)."""

    http_port: int = Field(default=8080, ge=0, le=65535)
    """Port of /livez, /readyz and /metrics (0: do not serve)."""

    api_admin_token: SecretStr | None = None
    """Bearer token of the HTTP API's administrator (`worker api` refuses to start without one); a secret."""

    api_port: int = Field(default=8000, ge=1, le=65535)
    """Port of the HTTP API (`worker api`), with its /livez, /readyz and /metrics."""

    inbox_retention_days: int = Field(default=30, ge=2)
    """Days a processed-event record is kept; duplicates are recognised for this long."""

    inbox_days_ahead: int = Field(default=7, ge=1)
    """Daily inbox partitions created ahead of time."""

    quota_thresholds: dict[str, list[Annotated[int, Field(ge=1, le=1000)]]] = {"default": [80, 100]}
    """Percent thresholds of each limit, by user tier (JSON); a tier not listed takes `default`. Each
    crossing is announced once per period and limit as a `quota.threshold_crossed` event."""

    quota_events: bool = True
    """Publish a `quota.threshold_crossed` event for each threshold reached (outbox and relay); false:
    thresholds are still recorded (and shown by the API's quota), no event is written."""

    event_source: str = Field(default="llm-persistence-worker", min_length=1, max_length=255)
    """CloudEvents `source` of the events the worker publishes (`quota.threshold_crossed`)."""

    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    """How often the outbox relay looks for events other workers wrote (its own it publishes at once)."""

    outbox_batch_size: PositiveInt = 100
    """Outbox events one relay round claims and publishes."""

    outbox_retention_days: int = Field(default=7, ge=1)
    """Days a published outbox event is kept before it is deleted."""

    producer_source: str = Field(default="llm-gateway", min_length=1, max_length=255)
    """CloudEvents `source` of the events the producer library builds (the LiteLLM callback); with each
    event's id it is the idempotency key, so keep it stable across restarts."""

    producer_spool_path: Path = Path("worker-spool.sqlite3")
    """The producer's durable spool (SQLite): events wait there until the broker confirmed them. Keep it
    on a persistent volume; each process takes the first free file of `PATH`, `PATH.1`, `PATH.2`…"""

    producer_spool_max_bytes: PositiveInt = 256 * 1024 * 1024
    """Event bytes the spool holds at most; past it a publish is refused (`SpoolFull`) and counted in
    `worker_producer_spool_refused_events_total`."""

    producer_window: PositiveInt = 256
    """Publishes the producer keeps awaiting the broker's confirms at once."""

    producer_reconnect_max_s: float = Field(default=5.0, gt=0)
    """Longest pause between the producer's reconnection attempts (it starts at 0.1 s and doubles)."""

    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """Event loop of `worker run` and `worker bench`: uvloop (faster; measured in docs/BENCHMARKS.md) or the standard one."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level written to the log."""

    log_format: Literal["auto", "json", "console"] = "auto"
    """`json` for machines, `console` for people, `auto`: console on a terminal, else JSON."""

    @field_validator("retry_delays_s", "unknown_user_delays_s")
    @classmethod
    def _non_empty_schedule(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("a retry schedule needs at least one delay")
        return value

    @field_validator("quota_thresholds")
    @classmethod
    def _sorted_thresholds(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        return {tier: sorted(set(percents)) for tier, percents in value.items()}
