"""`worker migrate`: Alembic upgrade to head, then the inbox partitions for the coming days."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from worker.commands import inbox
from worker.settings import Settings


def alembic_config(database_url: str) -> Config:
    """Alembic config of this checkout (alembic.ini beside the package, or in the working directory)."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        ini = base / "alembic.ini"
        if ini.is_file():
            config = Config(str(ini))
            config.attributes["database_url"] = database_url
            config.attributes["configure_logging"] = False
            return config
    raise FileNotFoundError("alembic.ini not found beside the worker package or in the working directory")


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings.database_url), revision)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="upgrade the schema to head and create inbox partitions")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings)
    asyncio.run(inbox.maintain(settings))
    return 0
