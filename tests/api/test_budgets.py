"""Budgets through the API: the quota per period and per limit, thresholds crossed, budget changes
(with the current period filled from the ledger), and usage with cost by month and by period."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import ADMIN, bearer, insert_api_key
from tests.support.db import rows, scalar


async def _new_user(client, **fields) -> dict:
    body = {"email": f"{uuid.uuid4()}@budget.test", "password": "correct horse battery", **fields}
    response = await client.post("/users", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def _now(db: AsyncEngine) -> datetime:
    """The database's clock: the one the API decides the current period by."""
    return await scalar(db, "SELECT now()")


def _month_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _day_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class Ledger:
    """Messages and usage records of one user, stored as the worker stores them (counters grown too)."""

    def __init__(self, db: AsyncEngine, user_id: str) -> None:
        self.db, self.user_id, self.conversation = db, user_id, uuid.uuid4()

    async def _ensure_conversation(self, conn) -> None:
        await conn.execute(
            text("INSERT INTO conversations (id, user_id, model) VALUES (:c, :u, 'chat-a') ON CONFLICT DO NOTHING"),
            {"c": self.conversation, "u": self.user_id},
        )

    async def message(self, at: datetime, prompt: int, completion: int, cost: str | None, model: str | None = None):
        async with self.db.begin() as conn:
            await self._ensure_conversation(conn)
            await conn.execute(
                text("INSERT INTO messages (id, conversation_id, role, content, model, prompt_tokens, completion_tokens,"
                     " cost_usd, created_at) VALUES (gen_random_uuid(), :c, 'assistant', 'x', :m, :p, :o, :cost, :at)"),
                {"c": self.conversation, "m": model, "p": prompt, "o": completion, "at": at,
                 "cost": Decimal(cost) if cost is not None else None},
            )
            await self._grow(conn, prompt + completion, cost)

    async def usage_record(self, at: datetime, prompt: int, completion: int, cost: str | None, model: str = "embed"):
        async with self.db.begin() as conn:
            await conn.execute(
                text("INSERT INTO usage_records (id, event_source, event_id, user_id, model, prompt_tokens,"
                     " completion_tokens, cost_usd, recorded_at)"
                     " VALUES (gen_random_uuid(), 't', :e, :u, :m, :p, :o, :cost, :at)"),
                {"e": str(uuid.uuid4()), "u": self.user_id, "m": model, "p": prompt, "o": completion, "at": at,
                 "cost": Decimal(cost) if cost is not None else None},
            )
            await self._grow(conn, prompt + completion, cost)

    async def _grow(self, conn, tokens: int, cost: str | None) -> None:
        await conn.execute(
            text("UPDATE users SET tokens_used = tokens_used + :t, cost_used = cost_used + :c WHERE id = :u"),
            {"t": tokens, "c": Decimal(cost or "0"), "u": self.user_id},
        )


async def _period_row(db, user_id, period: str, start: date, tokens: int, cost: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO usage_periods (user_id, period, period_start, tokens, cost_usd)"
                 " VALUES (:u, :p, :s, :t, :c)"),
            {"u": user_id, "p": period, "s": start, "t": tokens, "c": Decimal(cost)},
        )


async def _crossing(db, user_id, period: str, start: date | None, kind: str, limit: str, threshold: int) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO quota_crossings (event_id, user_id, period, period_start, limit_kind, limit_value,"
                 " threshold, usage) VALUES (gen_random_uuid(), :u, :p, :s, :k, :l, :t, :l)"),
            {"u": user_id, "p": period, "s": start, "k": kind, "l": Decimal(limit), "t": threshold},
        )


async def _quota(client, user_id: str, headers=ADMIN) -> dict:
    response = await client.get(f"/users/{user_id}/quota", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# --- the quota ---------------------------------------------------------------------------------


async def test_a_lifetime_user_with_a_cost_limit_gets_both_limits_with_exact_cost_strings(client, db) -> None:
    user = await _new_user(client, tokens_limit=1000, cost_limit_usd="0.0025")
    ledger = Ledger(db, user["id"])
    await ledger.message(datetime(2020, 1, 1, tzinfo=UTC), 100, 20, "0.000125")
    await ledger.usage_record(datetime(2026, 1, 1, tzinfo=UTC), 30, 0, "0.000000000001")
    await ledger.usage_record(datetime(2026, 1, 1, tzinfo=UTC), 50, 0, None)
    quota = await _quota(client, user["id"])
    assert quota == {
        "tokens_used": 200, "tokens_limit": 1000, "tokens_remaining": 800, "exceeded": False,
        "period": {"kind": "none", "start": None, "end": None},
        "limits": [
            {"kind": "tokens", "used": 200, "limit": 1000, "remaining": 800, "exceeded": False,
             "thresholds_crossed": []},
            {"kind": "cost_usd", "used": "0.000125000001", "limit": "0.0025", "remaining": "0.002374999999",
             "exceeded": False, "thresholds_crossed": []},
        ],
    }


@pytest.mark.parametrize("period", ["day", "month"])
async def test_a_period_user_counts_only_the_current_periods_row(client, db, period) -> None:
    user = await _new_user(client, tokens_limit=1000, cost_limit_usd="1", budget_period=period)
    now = await _now(db)
    start = _day_start(now) if period == "day" else _month_start(now)
    end = start + timedelta(days=1) if period == "day" else _month_start(start + timedelta(days=32))
    previous = (start - timedelta(days=1)).date() if period == "day" else _month_start(start - timedelta(days=1)).date()
    # Lifetime counters and the previous period are not this period's usage.
    await Ledger(db, user["id"]).usage_record(now - timedelta(days=40), 5000, 0, "9")
    await _period_row(db, user["id"], period, previous, 5000, "9")
    fresh = await _quota(client, user["id"])
    assert fresh["period"] == {"kind": period, "start": start.isoformat().replace("+00:00", "Z"),
                               "end": end.isoformat().replace("+00:00", "Z")}
    assert (fresh["tokens_used"], fresh["tokens_remaining"], fresh["exceeded"]) == (0, 1000, False)
    assert fresh["limits"][1] | {"thresholds_crossed": None} == {
        "kind": "cost_usd", "used": "0", "limit": "1", "remaining": "1", "exceeded": False, "thresholds_crossed": None}
    await _period_row(db, user["id"], period, start.date(), 400, "1.000000000000")
    quota = await _quota(client, user["id"])
    assert (quota["tokens_used"], quota["tokens_remaining"]) == (400, 600)
    assert quota["limits"][1]["used"] == "1" and quota["limits"][1]["remaining"] == "0"
    # The cost limit alone is reached: the quota is exceeded.
    assert quota["limits"][0]["exceeded"] is False and quota["limits"][1]["exceeded"] is True
    assert quota["exceeded"] is True


async def test_thresholds_crossed_are_this_periods_and_this_limits_only(client, db) -> None:
    user = await _new_user(client, tokens_limit=1000, cost_limit_usd="2.5", budget_period="month")
    start = _month_start(await _now(db)).date()
    last_month = _month_start(datetime.combine(start, datetime.min.time(), UTC) - timedelta(days=1)).date()
    uid = user["id"]
    for threshold in (100, 50, 80):
        await _crossing(db, uid, "month", start, "tokens", "1000", threshold)
    await _crossing(db, uid, "month", start, "tokens", "500", 90)  # under a former limit: re-armed since
    await _crossing(db, uid, "month", last_month, "tokens", "1000", 95)  # another period
    await _crossing(db, uid, "day", start, "tokens", "1000", 70)  # another period kind
    await _crossing(db, uid, "none", None, "tokens", "1000", 60)
    await _crossing(db, uid, "month", start, "cost_usd", "2.500000000000", 80)
    await _crossing(db, uid, "month", start, "cost_usd", "1000", 99)  # the tokens limit's value, another kind
    quota = await _quota(client, uid)
    assert [(limit["kind"], limit["thresholds_crossed"]) for limit in quota["limits"]] == [
        ("tokens", [50, 80, 100]), ("cost_usd", [80]),
    ]


async def test_a_lifetime_users_thresholds_are_those_without_a_period_start(client, db) -> None:
    user = await _new_user(client, tokens_limit=100)
    await _crossing(db, user["id"], "none", None, "tokens", "100", 80)
    await _crossing(db, user["id"], "month", date(2026, 1, 1), "tokens", "100", 100)
    assert (await _quota(client, user["id"]))["limits"][0]["thresholds_crossed"] == [80]


async def test_the_users_own_key_reads_the_same_quota_in_one_statement_and_another_key_reads_none(
    client, db
) -> None:
    user = await _new_user(client, tokens_limit=1000, cost_limit_usd="3", budget_period="day")
    other = await _new_user(client)
    await _period_row(db, user["id"], "day", _day_start(await _now(db)).date(), 10, "0.5")
    await _crossing(db, user["id"], "day", _day_start(await _now(db)).date(), "cost_usd", "3", 80)
    _, key = await insert_api_key(db, uuid.UUID(user["id"]))
    _, other_key = await insert_api_key(db, uuid.UUID(other["id"]))
    assert await _quota(client, user["id"], bearer(key)) == await _quota(client, user["id"])
    assert (await client.get(f"/users/{user['id']}/quota", headers=bearer(other_key))).status_code == 404


# --- budget changes -----------------------------------------------------------------------------


async def test_creating_a_user_takes_the_budget_fields(client) -> None:
    user = await _new_user(client, cost_limit_usd=12.5, budget_period="month", tokens_limit=10)
    assert (user["cost_limit_usd"], user["budget_period"], user["cost_used"], user["tokens_limit"]) == (
        "12.5", "month", "0", 10)


async def test_patch_changes_only_the_fields_given_and_null_removes_the_cost_limit(client) -> None:
    user = await _new_user(client, tier="free", tokens_limit=100, cost_limit_usd="5")
    changed = await client.patch(f"/users/{user['id']}", json={"tier": "pro", "tokens_limit": 5_000_000_000},
                                 headers=ADMIN)
    assert changed.status_code == 200, changed.text
    assert changed.json() | {"created_at": None} == user | {
        "tier": "pro", "tokens_limit": 5_000_000_000, "tokens_remaining": 5_000_000_000, "created_at": None}
    cleared = (await client.patch(f"/users/{user['id']}", json={"cost_limit_usd": None}, headers=ADMIN)).json()
    assert cleared["cost_limit_usd"] is None and cleared["tier"] == "pro"
    assert [limit["kind"] for limit in (await _quota(client, user["id"]))["limits"]] == ["tokens"]
    exact = await client.patch(f"/users/{user['id']}", json={"cost_limit_usd": "123456789012345678.123456789012"},
                               headers=ADMIN)
    assert exact.json()["cost_limit_usd"] == "123456789012345678.123456789012"


async def test_patch_is_for_the_administrator_only(client, db) -> None:
    user = await _new_user(client, tokens_limit=100)
    other = await _new_user(client)
    _, own_key = await insert_api_key(db, uuid.UUID(user["id"]))
    _, other_key = await insert_api_key(db, uuid.UUID(other["id"]))
    body = {"tokens_limit": 10**9}
    own = await client.patch(f"/users/{user['id']}", json=body, headers=bearer(own_key))
    assert own.status_code == 403 and own.json()["type"] == "/problems/forbidden"
    assert (await client.patch(f"/users/{user['id']}", json=body, headers=bearer(other_key))).status_code == 404
    assert (await client.patch(f"/users/{user['id']}", json=body)).status_code == 401
    assert await scalar(db, "SELECT tokens_limit FROM users WHERE id = :id", id=user["id"]) == 100


@pytest.mark.parametrize(
    "body",
    [{"cost_limit_usd": "0.0000000000001"}, {"cost_limit_usd": -1}, {"cost_limit_usd": "1e3"},
     {"cost_limit_usd": "1000000000000000000"}, {"cost_limit_usd": "NaN"}, {"tier": None}, {"tokens_limit": None},
     {"budget_period": "week"}, {"budget_period": None}, {"tokens_limit": -1}, {"spend": 1}],
)
async def test_a_bad_budget_is_a_422_and_changes_nothing(client, db, body) -> None:
    user = await _new_user(client, tokens_limit=100, cost_limit_usd="1")
    response = await client.patch(f"/users/{user['id']}", json=body, headers=ADMIN)
    assert response.status_code == 422 and response.json()["type"] == "/problems/invalid-input"
    stored = (await rows(db, "SELECT tier, tokens_limit, cost_limit_usd, budget_period FROM users WHERE id = :id",
                         id=user["id"]))[0]
    assert dict(stored) == {"tier": "free", "tokens_limit": 100, "cost_limit_usd": Decimal("1"),
                            "budget_period": "none"}


async def test_patching_an_unknown_user_is_404(client) -> None:
    response = await client.patch(f"/users/{uuid.uuid4()}", json={"tier": "pro"}, headers=ADMIN)
    assert response.status_code == 404


@pytest.mark.parametrize("period", ["day", "month"])
async def test_entering_a_period_fills_its_usage_from_the_ledger(client, db, period) -> None:
    user = await _new_user(client, tokens_limit=1000, cost_limit_usd="1")
    now = await _now(db)
    start = _day_start(now) if period == "day" else _month_start(now)
    ledger = Ledger(db, user["id"])
    await ledger.message(start, 100, 10, "0.000110000001")  # the period's first instant: in
    await ledger.message(now, 1, 2, None)  # unpriced: tokens count, cost 0
    await ledger.usage_record(now, 7, 0, "0.25")
    await ledger.message(start - timedelta(microseconds=1), 50, 0, "0.5")  # the instant before: out
    await ledger.usage_record(start - timedelta(days=40), 9, 0, "0.5")
    # A row left from an earlier time with this period: the worker did not grow it meanwhile.
    await _period_row(db, user["id"], period, start.date(), 3, "0.000000000003")

    response = await client.patch(f"/users/{user['id']}", json={"budget_period": period}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["budget_period"] == period and response.json()["tokens_remaining"] == 1000 - 120
    stored = await rows(db, "SELECT period, period_start, tokens, cost_usd FROM usage_periods WHERE user_id = :u",
                        u=user["id"])
    assert [tuple(r.values()) for r in stored] == [(period, start.date(), 120, Decimal("0.250110000001"))]
    quota = await _quota(client, user["id"])
    assert (quota["tokens_used"], quota["limits"][1]["used"]) == (120, "0.250110000001")
    # The lifetime counters are not touched.
    assert (await client.get(f"/users/{user['id']}", headers=ADMIN)).json()["tokens_used"] == 120 + 50 + 9


async def test_a_patch_that_keeps_the_period_leaves_its_usage_alone(client, db) -> None:
    user = await _new_user(client, budget_period="day")
    today = _day_start(await _now(db))
    await Ledger(db, user["id"]).usage_record(today, 10, 0, "0.1")
    await _period_row(db, user["id"], "day", today.date(), 7, "0.07")  # as the worker grew it
    await client.patch(f"/users/{user['id']}", json={"budget_period": "day", "tokens_limit": 5}, headers=ADMIN)
    assert await scalar(db, "SELECT tokens FROM usage_periods WHERE user_id = :u", u=user["id"]) == 7


async def test_leaving_a_period_for_none_counts_the_lifetime_again(client, db) -> None:
    user = await _new_user(client, tokens_limit=100, budget_period="month")
    await Ledger(db, user["id"]).usage_record(datetime(2020, 5, 1, tzinfo=UTC), 60, 0, "1")
    assert (await _quota(client, user["id"]))["tokens_used"] == 0
    await client.patch(f"/users/{user['id']}", json={"budget_period": "none"}, headers=ADMIN)
    assert (await _quota(client, user["id"]))["tokens_used"] == 60


async def test_a_patch_waits_for_a_batch_holding_the_users_row(client, db) -> None:
    user = await _new_user(client, tokens_limit=100)
    async with db.connect() as batch:
        transaction = await batch.begin()
        await batch.execute(text("SELECT 1 FROM users WHERE id = :u FOR NO KEY UPDATE"), {"u": user["id"]})

        patch = asyncio.create_task(client.patch(f"/users/{user['id']}", json={"budget_period": "day"}, headers=ADMIN))
        await asyncio.sleep(0.3)
        assert not patch.done()
        # What the batch counts before its commit is in the ledger the patch then fills the period from.
        await batch.execute(
            text("INSERT INTO usage_records (id, event_source, event_id, user_id, model, prompt_tokens,"
                 " completion_tokens, cost_usd, recorded_at) VALUES (gen_random_uuid(), 't', :e, :u, 'm', 42, 0, NULL,"
                 " now())"),
            {"e": str(uuid.uuid4()), "u": user["id"]},
        )
        await transaction.commit()
        assert (await patch).status_code == 200
    assert await scalar(db, "SELECT tokens FROM usage_periods WHERE user_id = :u", u=user["id"]) == 42


# --- usage with cost ----------------------------------------------------------------------------


async def _usage(client, user_id: str, **params) -> dict:
    response = await client.get(f"/users/{user_id}/usage", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def _groups(usage: dict) -> list[tuple]:
    return [(g["key"], g["total_tokens"], g["cost_usd"], g["unpriced_events"]) for g in usage["groups"]]


async def test_usage_by_month_sums_exact_costs_and_counts_unpriced_events(client, db) -> None:
    user = await _new_user(client)
    ledger = Ledger(db, user["id"])
    await ledger.message(datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=UTC), 10, 5, "0.000000000001")
    await ledger.message(datetime(2026, 11, 1, tzinfo=UTC), 1, 2, None, model="chat-b")
    await ledger.usage_record(datetime(2026, 11, 30, 12, tzinfo=UTC), 100, 0, "0.1")
    await ledger.usage_record(datetime(2026, 11, 30, 13, tzinfo=UTC), 100, 0, "0.2")
    by_month = await _usage(client, user["id"], group_by="month")
    assert _groups(by_month) == [("2026-10", 15, "0.000000000001", 0), ("2026-11", 203, "0.3", 1)]
    assert (by_month["total_tokens"], by_month["cost_usd"], by_month["unpriced_events"]) == (218, "0.300000000001", 1)
    assert by_month["period"] is None
    by_model = await _usage(client, user["id"], group_by="model")
    assert _groups(by_model) == [("chat-a", 15, "0.000000000001", 0), ("chat-b", 3, "0", 1), ("embed", 200, "0.3", 0)]
    by_day = await _usage(client, user["id"], group_by="day", **{"from": "2026-11-01T00:00:00Z"})
    assert _groups(by_day) == [("2026-11-01", 3, "0", 1), ("2026-11-30", 200, "0.3", 0)]
    # Over all time, the totals are the user's counters.
    stored = (await rows(db, "SELECT tokens_used, cost_used FROM users WHERE id = :u", u=user["id"]))[0]
    assert (by_month["total_tokens"], Decimal(by_month["cost_usd"])) == (stored["tokens_used"], stored["cost_used"])


@pytest.mark.parametrize(
    ("period", "keys"),
    [("day", ["2026-10-31", "2026-11-01", "2026-11-30"]), ("month", ["2026-10-01", "2026-11-01"]),
     ("none", ["lifetime"])],
)
async def test_usage_by_period_follows_the_users_own_period(client, db, period, keys) -> None:
    user = await _new_user(client, budget_period=period)
    ledger = Ledger(db, user["id"])
    await ledger.message(datetime(2026, 10, 31, 23, 59, tzinfo=UTC), 10, 0, "0.5")
    await ledger.usage_record(datetime(2026, 11, 1, 0, 0, tzinfo=UTC), 20, 0, "0.25")
    await ledger.usage_record(datetime(2026, 11, 30, 0, 0, tzinfo=UTC), 30, 0, None)
    usage = await _usage(client, user["id"], group_by="period")
    assert usage["period"] == period and [g["key"] for g in usage["groups"]] == keys
    assert sum(g["total_tokens"] for g in usage["groups"]) == usage["total_tokens"] == 60
    assert usage["cost_usd"] == "0.75" and usage["unpriced_events"] == 1


async def test_usage_of_a_user_without_records_is_zero(client) -> None:
    user = await _new_user(client)
    usage = await _usage(client, user["id"], group_by="period")
    assert usage == {"group_by": "period", "period": "none", "groups": [], "prompt_tokens": 0,
                     "completion_tokens": 0, "total_tokens": 0, "cost_usd": "0", "unpriced_events": 0}
