"""Workloads of mocked LiteLLM calls for the end-to-end tests, and what the worker should hold after them."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from decimal import ROUND_HALF_EVEN, Decimal

import litellm
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.db import rows, scalar
from worker.commands.users import create_user
from worker.producer import project_uuid
from worker.settings import Settings


async def provision(settings: Settings, count: int) -> list[str]:
    """`count` users as LiteLLM names them, created with `worker users create --external-id`'s function."""
    names = [f"litellm-{uuid.uuid4().hex[:10]}" for _ in range(count)]
    for name in names:
        await create_user(settings, f"{name}@litellm.test", None, None, name)
    return names


def mocked(turn: int, user: str) -> dict:
    """The request of one call: fixed text, an exact-usage ModelResponse or a stream, by turn."""
    kind = turn % 3
    if kind == 0:
        return {"mock_response": f"reply {turn} to {user}"}
    if kind == 1:
        return {"mock_response": litellm.ModelResponse(
            choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"reply {turn}"}}],
            usage=litellm.Usage(prompt_tokens=100 + turn, completion_tokens=7 * turn + 1, total_tokens=107 + 8 * turn),
        )}
    return {"mock_response": f"streamed reply {turn} to {user}", "stream": True}


async def call(router: litellm.Router, user: str, turn: int, *, conversation: str | None, by_key: bool = False) -> None:
    request = mocked(turn, user)
    identity = {"metadata": {"user_api_key_user_id": user}} if by_key else {"user": user}
    if conversation is not None:
        identity.setdefault("metadata", {})["conversation_id"] = conversation
    response = await router.acompletion(
        model="gpt-test", messages=[{"role": "user", "content": f"turn {turn} of {user}"}], **identity, **request
    )
    if request.get("stream"):
        async for _ in response:
            pass


async def failing_call(router: litellm.Router, user: str) -> None:
    try:
        await router.acompletion(
            model="gpt-test", messages=[{"role": "user", "content": "fails"}], user=user,
            mock_response=Exception("the provider failed"),
        )
    except Exception:
        return
    raise AssertionError("the mocked failure did not raise")


def reported_tokens(successes) -> Counter[uuid.UUID]:
    """Tokens LiteLLM reported per project user, from what it handed the loggers."""
    totals: Counter[uuid.UUID] = Counter()
    for success in successes:
        metadata = success.kwargs["litellm_params"].get("metadata") or {}
        name = metadata.get("user_api_key_user_id") or success.kwargs["user"]
        totals[project_uuid(name)] += success.tokens
    return totals


def reported_costs(successes) -> dict[uuid.UUID, Decimal]:
    """LiteLLM's `response_cost` per project user, each as the callback sends it (12 places, half-even)."""
    totals: dict[uuid.UUID, Decimal] = {}
    for success in successes:
        metadata = success.kwargs["litellm_params"].get("metadata") or {}
        user = project_uuid(metadata.get("user_api_key_user_id") or success.kwargs["user"])
        cost = Decimal(str(success.kwargs["response_cost"])).quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)
        totals[user] = totals.get(user, Decimal(0)) + cost
    return totals


async def costs_used(db: AsyncEngine, users: list[uuid.UUID]) -> dict[uuid.UUID, Decimal]:
    found = await rows(db, "SELECT id, cost_used FROM users WHERE id = ANY(:ids)", ids=users)
    return {row["id"]: row["cost_used"] for row in found}


async def counted(db: AsyncEngine, users: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    found = await rows(db, "SELECT id, tokens_used FROM users WHERE id = ANY(:ids)", ids=users)
    return {row["id"]: row["tokens_used"] for row in found}


async def wait_for_counts(db: AsyncEngine, expected: Counter[uuid.UUID], timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    users = list(expected)
    while (got := await counted(db, users)) != dict(expected):
        assert asyncio.get_running_loop().time() < deadline, {u: (got.get(u), expected[u]) for u in users}
        await asyncio.sleep(0.2)


async def stored_rows(db: AsyncEngine, users: list[uuid.UUID]) -> tuple[int, int]:
    """(messages, usage records) stored for these users."""
    messages = await scalar(
        db, "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.user_id = ANY(:ids)",
        ids=users,
    )
    usage = await scalar(db, "SELECT count(*) FROM usage_records WHERE user_id = ANY(:ids)", ids=users)
    return messages, usage
