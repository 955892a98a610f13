"""A user's token and cost usage, grouped by day, month, model or budget period, and full-text search over
their messages."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from worker.api.dependencies import Repo, VisibleUser, not_found
from worker.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from worker.api.problems import responses
from worker.api.schemas import NO_NUL, SearchHit, SearchPage, Usage, UsageGroup, UsageGrouping

router = APIRouter(tags=["usage"], responses=responses(401, 404, 422, 503))


@router.get("/users/{user_id}/usage", response_model=Usage)
async def get_usage(
    user_id: VisibleUser,
    repo: Repo,
    start: Annotated[AwareDatetime | None, Query(alias="from", description="Inclusive lower bound.")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to", description="Exclusive upper bound.")] = None,
    group_by: Annotated[
        UsageGrouping,
        Query(description="UTC `day` or `month`, `model`, or `period`: the user's own budget period (its first "
                          "day as the key; one `lifetime` group for `none`)."),
    ] = "day",
) -> Usage:
    """Token and cost sums from messages and usage records; over all time, the totals equal `tokens_used`
    and `cost_used`. Costs are decimal strings; records without a price count 0 and are counted apart."""
    period = await repo.budget_period(user_id) if group_by == "period" else None
    if group_by == "period" and period is None:
        raise not_found("user")
    rows = await repo.usage(user_id, start, end, f"period:{period}" if period else group_by)
    *groups, total = [_group(row) for row in rows]
    return Usage(group_by=group_by, period=period, groups=groups, prompt_tokens=total.prompt_tokens,
                 completion_tokens=total.completion_tokens, total_tokens=total.total_tokens,
                 cost_usd=total.cost_usd, unpriced_events=total.unpriced_events)


def _group(row: dict) -> UsageGroup:
    return UsageGroup(
        key=row["key"] or "", prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
        total_tokens=row["prompt_tokens"] + row["completion_tokens"], cost_usd=row["cost_usd"],
        unpriced_events=row["unpriced_events"], records=row["records"],
    )


@router.get("/users/{user_id}/messages/search", response_model=SearchPage)
async def search_messages(
    user_id: VisibleUser,
    repo: Repo,
    q: Annotated[str, Query(min_length=1, max_length=256, pattern=NO_NUL, description="Words to find (web search syntax).")],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> SearchPage:
    """The user's messages matching `q`, best first (`simple` text search: any language, words as written)."""
    after = decode_cursor(cursor, (float, uuid.UUID)) if cursor else None
    rows = await repo.search(user_id, q, after, limit)
    items = [SearchHit(**row) for row in rows]
    last = items[-1] if len(items) == limit else None
    return SearchPage(items=items, next_cursor=encode_cursor(last.rank, last.id) if last else None)
