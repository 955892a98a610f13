"""The README stays true to the code: every setting, every command and every link."""

from __future__ import annotations

import re
from pathlib import Path

from worker.cli import COMMANDS, build_parser
from worker.commands.show_settings import settings_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_settings_table_is_the_generated_one() -> None:
    # Regenerate with `worker settings` and paste it over the README's table.
    assert settings_table() in README


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
