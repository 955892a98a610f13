"""structlog set-up: JSON for machines, console for people; stdlib loggers go through the same pipeline."""

from __future__ import annotations

import logging
import sys

import structlog

from worker.settings import Settings

# Libraries that would otherwise log SQL parameters or message bodies at DEBUG.
QUIET_LOGGERS = ("sqlalchemy.engine", "aiormq", "aio_pika", "asyncpg", "alembic.runtime.plugins")


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the stdlib root logger once, at start-up."""
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if use_json else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))


def _identity(logger: object, name: str, event_dict: dict) -> dict:
    return event_dict
