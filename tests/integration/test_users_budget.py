"""`worker users budget`, run as a user runs it: the same change as `PATCH /users/{user_id}`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC
from decimal import Decimal

from sqlalchemy import text

from tests.support.config import make_settings
from tests.support.db import create_user, rows
from tests.support.processes import REPO, settings_env


async def users_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = settings_env(make_settings(database_url, "amqp://guest:guest@127.0.0.1:5672/"))
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "worker", "users", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


async def _budget(db, user_id) -> dict:
    found = await rows(db, "SELECT tier, tokens_limit, cost_limit_usd, budget_period FROM users WHERE id = :id",
                       id=user_id)
    return dict(found[0])


async def test_budget_sets_limits_and_period_and_fills_the_current_period(db, database_url) -> None:
    user_id = await create_user(db)
    async with db.begin() as conn:
        now = (await conn.execute(text("SELECT now()"))).scalar()
        await conn.execute(
            text("INSERT INTO usage_records (id, event_source, event_id, user_id, model, prompt_tokens,"
                 " completion_tokens, cost_usd, recorded_at) VALUES (gen_random_uuid(), 't', :e, :u, 'm', 30, 12,"
                 " 0.000042000001, :at)"),
            {"e": str(uuid.uuid4()), "u": user_id, "at": now},
        )
    result = await users_cli(database_url, "budget", str(user_id), "--period", "month", "--tokens-limit", "500",
                             "--cost-limit", "2.5", "--tier", "pro")
    assert result.returncode == 0, result.stderr
    month = now.astimezone(UTC).date().replace(day=1)
    assert result.stdout.splitlines() == [
        f"updated user {user_id}", f"month from {month}: 42 tokens, 0.000042000001 USD so far",
    ]
    assert await _budget(db, user_id) == {"tier": "pro", "tokens_limit": 500, "cost_limit_usd": Decimal("2.5"),
                                          "budget_period": "month"}
    periods = await rows(db, "SELECT period_start, tokens, cost_usd FROM usage_periods WHERE user_id = :u", u=user_id)
    assert [tuple(r.values()) for r in periods] == [(month, 42, Decimal("0.000042000001"))]

    cleared = await users_cli(database_url, "budget", str(user_id), "--no-cost-limit")
    assert cleared.returncode == 0 and cleared.stdout.splitlines() == [f"updated user {user_id}"]
    assert await _budget(db, user_id) == {"tier": "pro", "tokens_limit": 500, "cost_limit_usd": None,
                                          "budget_period": "month"}


async def test_budget_refuses_bad_values_and_unknown_users_and_changes_nothing(db, database_url) -> None:
    user_id = await create_user(db)
    before = await _budget(db, user_id)
    for args, message in [
        (["--cost-limit", "0.0000000000001"], "at most 12 digits after the point"),
        (["--cost-limit", "-1"], "non-negative decimal"),
        (["--tokens-limit", "-5"], "an integer from 0"),
        (["--period", "week"], "invalid choice"),
        (["--cost-limit", "1", "--no-cost-limit"], "not allowed with argument"),
    ]:
        result = await users_cli(database_url, "budget", str(user_id), *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    assert await _budget(db, user_id) == before
    unknown = await users_cli(database_url, "budget", str(uuid.uuid4()), "--tokens-limit", "1")
    assert unknown.returncode == 1 and "no user" in unknown.stderr
