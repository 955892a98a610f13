"""The README stays true to the code: every setting, every command and every link."""

from __future__ import annotations

import re
from pathlib import Path

from worker.cli import COMMANDS, build_parser
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for name, field in Settings.model_fields.items():
        row = next((line for line in README.splitlines() if line.startswith(f"| `WORKER_{name.upper()}`")), None)
        assert row is not None, f"WORKER_{name.upper()} missing from README"
        default = field.default
        shown = "[" + ",".join(map(str, default)) + "]" if isinstance(default, list) else str(default)
        assert f"`{shown}`" in row, f"README shows a stale default for WORKER_{name.upper()}"


def test_every_command_is_documented() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert len(subcommands) == len(COMMANDS)
    for name in subcommands:
        assert f"`worker {name}" in README, f"`worker {name}` missing from README"


def test_every_relative_link_points_at_a_file() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to missing {target}"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    assert "ops/dev test" in README
    assert "ops/dev test" in (ROOT / ".ci" / "run").read_text()
