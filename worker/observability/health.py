"""Liveness and readiness of one worker process, computed from the parts that decide them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Health:
    """Named checks; the worker is ready when every readiness check passes."""

    liveness: dict[str, Callable[[], bool]] = field(default_factory=dict)
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def live(self) -> tuple[bool, dict[str, bool]]:
        return _evaluate(self.liveness)

    def ready(self) -> tuple[bool, dict[str, bool]]:
        return _evaluate(self.readiness)


def _evaluate(checks: dict[str, Callable[[], bool]]) -> tuple[bool, dict[str, bool]]:
    results = {}
    for name, check in checks.items():
        try:
            results[name] = bool(check())
        except Exception:  # noqa: BLE001 - a check that cannot answer is failing
            results[name] = False
    return all(results.values()), results
