"""A user's token usage, grouped by day or model, and full-text search over their messages."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from worker.api.dependencies import Repo, VisibleUser
from worker.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from worker.api.problems import responses
from worker.api.schemas import NO_NUL, SearchHit, SearchPage, Usage, UsageGroup

router = APIRouter(tags=["usage"], responses=responses(401, 404, 422, 503))


@router.get("/users/{user_id}/usage", response_model=Usage)
async def get_usage(
    user_id: VisibleUser,
    repo: Repo,
    start: Annotated[AwareDatetime | None, Query(alias="from", description="Inclusive lower bound.")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to", description="Exclusive upper bound.")] = None,
    group_by: Literal["day", "model"] = "day",
) -> Usage:
    """Token sums from messages and usage records; over all time, the total equals `tokens_used`."""
    rows = await repo.usage(user_id, start, end, group_by)
    groups = [
        UsageGroup(**row, total_tokens=row["prompt_tokens"] + row["completion_tokens"]) for row in rows
    ]
    prompt = sum(g.prompt_tokens for g in groups)
    completion = sum(g.completion_tokens for g in groups)
    return Usage(group_by=group_by, groups=groups, prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=prompt + completion)


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
