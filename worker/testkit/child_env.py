"""The environment that reproduces a `Settings` in a child process (tests' and the bench's workers)."""

from __future__ import annotations

import json
import os

from pydantic import SecretStr

from worker.settings import Settings


def settings_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment, with our own `WORKER_*` (then `extra`) in place of the parent's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            continue
        else:
            text = str(value)
        env[f"WORKER_{name.upper()}"] = text
    env.update(extra or {})
    return env
