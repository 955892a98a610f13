"""`worker prices load` and `list`, run as a user runs them, against a database of their own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.config import make_settings, migrated_database
from tests.support.db import rows, scalar
from tests.support.processes import REPO, settings_env
from tests.support.services import drop_database, unique_name

DATA = Path(__file__).resolve().parents[1] / "data"
HEADER = "model,input_cost_per_token,output_cost_per_token"


@pytest.fixture(scope="module")
async def prices_url() -> AsyncIterator[str]:
    # Its own database: the prices loaded here must not price other tests' events.
    name = unique_name("aiworker_prices")
    yield await migrated_database(name)
    await drop_database(name)


@pytest.fixture
async def prices_db(prices_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(prices_url, pool_size=1)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("TRUNCATE model_prices")
    yield engine
    await engine.dispose()


async def prices_cli(url: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = settings_env(make_settings(url, "amqp://guest:guest@127.0.0.1:5672/"))
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "worker", "prices", *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


async def _table(db: AsyncEngine) -> list[tuple[str, date, Decimal, Decimal]]:
    found = await rows(db, "SELECT model, valid_from, input_cost_per_token, output_cost_per_token FROM model_prices"
                           " ORDER BY model, valid_from")
    return [(r["model"], r["valid_from"], r["input_cost_per_token"], r["output_cost_per_token"]) for r in found]


async def test_the_litellm_file_loads_exact_prices_and_reports_what_it_skipped(prices_url, prices_db) -> None:
    result = await prices_cli(prices_url, "load", DATA / "model_prices.json", "--valid-from", "2026-11-01")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"loaded 5 prices (5 new, 0 replaced), skipped 3 entries, from {DATA / 'model_prices.json'}"
    ]
    assert "skipped dall-e-3: no input_cost_per_token and output_cost_per_token" in result.stderr
    day = date(2026, 11, 1)
    assert await _table(prices_db) == [
        ("claude-3-5-haiku-20241022", day, Decimal("0.000000800000000000"), Decimal("0.000004000000000000")),
        ("gemini-1.5-flash-8b", day, Decimal("0.000000037500000000"), Decimal("0.000000150000000000")),
        ("gpt-4o", day, Decimal("0.000002500000000000"), Decimal("0.000010000000000000")),
        ("gpt-4o-mini", day, Decimal("0.000000150000000000"), Decimal("0.000000600000000000")),
        ("text-embedding-3-small", day, Decimal("0.000000020000000000"), Decimal("0E-18")),
    ]


async def test_the_csv_file_loads_its_own_days_and_today_in_utc_by_default(prices_url, prices_db) -> None:
    result = await prices_cli(prices_url, "load", DATA / "model_prices.csv")
    assert result.returncode == 0, result.stderr
    assert "loaded 4 prices (4 new, 0 replaced), skipped 0 entries" in result.stdout
    today = datetime.now(UTC).date()
    assert [(m, d, i.normalize(), o.normalize()) for m, d, i, o in await _table(prices_db)] == [
        ("gpt-4o", date(2026, 1, 1), Decimal("0.0000025"), Decimal("0.00001")),
        ("gpt-4o", date(2026, 12, 1), Decimal("0.00000125"), Decimal("0.000005")),
        ("llama-3.1-8b-instruct", today, Decimal("5.5E-8"), Decimal("5.5E-8")),
        ("mistral-small-latest", today, Decimal("1E-7"), Decimal("3E-7")),
    ]


async def test_loading_again_replaces_the_same_days_prices_and_keeps_other_days(prices_url, prices_db, tmp_path) -> None:
    first = tmp_path / "first.csv"
    first.write_text(f"{HEADER},valid_from\ngpt-4o,0.000005,0.000015,2026-01-01\ngpt-4o,0.000003,0.00001,2026-06-01\n")
    second = tmp_path / "second.csv"
    second.write_text(f"{HEADER}\ngpt-4o,0.0000025,0.00001\n")
    assert (await prices_cli(prices_url, "load", first)).returncode == 0
    again = await prices_cli(prices_url, "load", second, "--valid-from", "2026-06-01")
    assert "loaded 1 prices (0 new, 1 replaced)" in again.stdout, again.stderr
    assert [(d, i.normalize()) for _, d, i, _ in await _table(prices_db)] == [
        (date(2026, 1, 1), Decimal("0.000005")), (date(2026, 6, 1), Decimal("0.0000025")),
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.csv", f"{HEADER}\ngood-model,0.000001,0.000002\nbad-model,0.000001,lots\n",
         "bad.csv: line 3, output_cost_per_token: must be a non-negative decimal"),
        ("bad.json", '{"good": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},\n'
                     ' "bad": {"input_cost_per_token": -1e-06, "output_cost_per_token": 2e-06}}',
         "bad.json: entry 'bad', input_cost_per_token: must be a non-negative decimal"),
        ("cut.json", '{"good": {"input_cost_per_token": 1e-06,\n', "cut.json: line 2, column 1: not JSON"),
    ],
)
async def test_a_bad_file_is_refused_with_where_and_nothing_is_loaded(
    prices_url, prices_db, tmp_path, name, text, message
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = await prices_cli(prices_url, "load", path)
    assert result.returncode == 2
    assert message in result.stderr and "nothing loaded" in result.stderr
    assert result.stdout == ""
    assert await scalar(prices_db, "SELECT count(*) FROM model_prices") == 0


async def test_a_missing_file_or_a_bad_day_is_refused(prices_url, prices_db, tmp_path) -> None:
    missing = await prices_cli(prices_url, "load", tmp_path / "absent.json")
    assert missing.returncode == 2 and "cannot read it" in missing.stderr
    bad_day = await prices_cli(prices_url, "load", DATA / "model_prices.csv", "--valid-from", "2026-02-30")
    assert bad_day.returncode == 2 and "YYYY-MM-DD" in bad_day.stderr
    assert await scalar(prices_db, "SELECT count(*) FROM model_prices") == 0


async def test_list_prints_exact_prices_of_one_model_or_all(prices_url, prices_db) -> None:
    assert (await prices_cli(prices_url, "load", DATA / "model_prices.csv")).returncode == 0
    one = await prices_cli(prices_url, "list", "gpt-4o")
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == [
        "model\tvalid_from\tinput_cost_per_token\toutput_cost_per_token",
        "gpt-4o\t2026-01-01\t0.0000025\t0.00001",
        "gpt-4o\t2026-12-01\t0.00000125\t0.000005",
    ]
    assert len((await prices_cli(prices_url, "list")).stdout.splitlines()) == 1 + 4
    unknown = await prices_cli(prices_url, "list", "no-such-model")
    assert unknown.returncode == 1 and "no prices for 'no-such-model'" in unknown.stderr
