"""`worker settings`: every setting, its default and what it does, as the README's Markdown table."""

from __future__ import annotations

import argparse
from typing import Any

from worker.settings import Settings

HEADER = "| variable | default | what it does |\n|---|---|---|"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("settings", help="print every WORKER_* setting with its default (Markdown)")
    parser.set_defaults(handler=run)


def settings_table() -> str:
    """The Markdown table of every setting: generated, so the README cannot drift from the code."""
    rows = [HEADER]
    prefix = Settings.model_config.get("env_prefix", "")
    for name, field in Settings.model_fields.items():
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{prefix}{name.upper()}` | `{_shown(field.default)}` | {description} |")
    return "\n".join(rows)


def _shown(default: Any) -> str:
    if isinstance(default, list):
        return "[" + ",".join(map(str, default)) + "]"
    return str(default)


def run(args: argparse.Namespace, settings: Settings) -> int:
    print(settings_table())
    return 0
