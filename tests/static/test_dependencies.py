"""Every package the worker imports is declared in pyproject.toml, so an installed wheel pulls it in."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Optional extras, and the only modules allowed to import what they bring.
EXTRAS_USED_BY = {"bench": "worker/bench/", "litellm": "worker/integrations/"}


def test_every_package_the_code_imports_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {_name(spec) for spec in project["dependencies"]}
    extras = {extra: {_name(spec) for spec in project["optional-dependencies"][extra]} for extra in EXTRAS_USED_BY}
    providers = packages_distributions()
    missing = []
    for path, module in _third_party_imports():
        declared = required | {
            name for extra, prefix in EXTRAS_USED_BY.items() if path.startswith(prefix) for name in extras[extra]
        }
        if not {_canonical(d) for d in providers.get(module, [module])} & declared:
            missing.append(f"{path}: {module}")
    assert not missing, missing


def test_the_libraries_whose_internals_the_code_reads_are_bounded_to_a_tested_series() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dependencies = {_name(spec): spec for spec in project["dependencies"]}
    for name in ("aiormq", "pamqp", "prometheus-client"):
        assert re.search(r"<\d+\.\d+", dependencies[name]), dependencies[name]


def _third_party_imports() -> list[tuple[str, str]]:
    found = []
    for path in sorted([*(ROOT / "worker").rglob("*.py"), *(ROOT / "alembic").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("worker", "__future__"):
                    found.append((path.relative_to(ROOT).as_posix(), top))
    return found


def _name(spec: str) -> str:
    return _canonical(re.match(r"[A-Za-z0-9._-]+", spec).group(0))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
