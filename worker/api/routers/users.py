"""Users: creation and budget changes (admin), the user with its counters, and the gateway's quota check."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.exc import IntegrityError

from worker.api.credentials import hash_password, key_hash, looks_like_api_key
from worker.api.dependencies import (
    INVALID_TOKEN,
    AdminDep,
    CallerDep,
    Credentials,
    Repo,
    Uow,
    VisibleUser,
    bearer_token,
    is_admin,
    key_usable,
    not_found,
)
from worker.api.problems import ApiError, responses
from worker.api.schemas import (
    BudgetUpdate,
    CostLimitState,
    NewUser,
    Period,
    Quota,
    TokensLimitState,
    UserOut,
)
from worker.db.budgets import KEEP, BudgetChange, NoSuchUser, change_budget
from worker.db.models import User
from worker.producer.identity import project_uuid

router = APIRouter(tags=["users"], responses=responses(401, 422, 503))


@router.post("/users", status_code=201, response_model=UserOut, responses=responses(403, 409))
async def create_user(body: NewUser, _: AdminDep, uow: Uow, repo: Repo) -> UserOut:
    """Create a user; the password is stored as an argon2id hash. With `external_id`, the user's id is its UUID."""
    user_id = project_uuid(body.external_id) if body.external_id is not None else uuid.uuid4()
    user = User(id=user_id, email=body.email, hashed_password=await hash_password(body.password))
    if body.tier is not None:
        user.tier = body.tier
    if body.tokens_limit is not None:
        user.tokens_limit = body.tokens_limit
    if body.budget_period is not None:
        user.budget_period = body.budget_period
    user.cost_limit_usd = body.cost_limit_usd
    uow.users.add(user)
    try:
        await uow.commit()
    except IntegrityError as exc:
        if body.external_id is not None and await repo.user(user_id) is not None:
            raise ApiError(
                409, "A user with this external id already exists.", problem_type="/problems/external-id-taken"
            ) from exc
        raise ApiError(409, "A user with this email already exists.", problem_type="/problems/email-taken") from exc
    return await _user(repo, user.id)


async def _user(repo: Repo, user_id: uuid.UUID) -> UserOut:
    row = await repo.user(user_id)
    if row is None:
        raise not_found("user")
    return UserOut(**row)


@router.get("/users/{user_id}", response_model=UserOut, responses=responses(404))
async def get_user(user_id: uuid.UUID, who: CallerDep, repo: Repo) -> UserOut:
    """The user with its lifetime counters, its budget and what the current period has left."""
    if not who.may_see(user_id):
        raise not_found("user")
    return await _user(repo, user_id)


@router.patch("/users/{user_id}", response_model=UserOut, responses=responses(403, 404))
async def update_budget(user_id: VisibleUser, body: BudgetUpdate, _: AdminDep, uow: Uow, repo: Repo) -> UserOut:
    """Change the tier, limits or budget period. Entering `day` or `month` fills the current period's
    usage from the stored messages and usage records, in the same transaction."""
    fields = body.model_fields_set
    change = BudgetChange(
        tier=body.tier,
        tokens_limit=body.tokens_limit,
        cost_limit_usd=body.cost_limit_usd if "cost_limit_usd" in fields else KEEP,
        budget_period=body.budget_period,
    )
    try:
        await change_budget(uow.sql, user_id, change)
    except NoSuchUser:
        raise not_found("user") from None
    await uow.commit()
    return await _user(repo, user_id)


@router.get("/users/{user_id}/quota", response_model=Quota, responses=responses(404))
async def get_quota(user_id: uuid.UUID, request: Request, repo: Repo, credentials: Credentials) -> Quota:
    """May this user spend more? One indexed read of the counters every acknowledged event has grown."""
    # The gateway's hot path: with an API key, the key's check and the quota are one statement.
    token = bearer_token(credentials)
    if is_admin(request, token):
        row = await repo.quota(user_id)
    elif looks_like_api_key(token):
        row = await repo.quota_with_key(key_hash(token), user_id)
        if not key_usable(row):
            raise ApiError(401, INVALID_TOKEN)
        if row["user_id"] is None:  # another user's, or none: the same answer
            row = None
    else:
        raise ApiError(401, INVALID_TOKEN)
    if row is None:
        raise not_found("user")
    return _quota(row)


def _quota(row: dict[str, Any]) -> Quota:
    """The quota from its statement's row; "exceeded" means used >= limit, for every limit."""
    limits: list[TokensLimitState | CostLimitState] = [
        TokensLimitState(
            kind="tokens", used=row["tokens_used"], limit=row["tokens_limit"], remaining=row["tokens_remaining"],
            exceeded=row["tokens_used"] >= row["tokens_limit"], thresholds_crossed=row["tokens_crossed"],
        )
    ]
    if row["cost_limit_usd"] is not None:
        limits.append(CostLimitState(
            kind="cost_usd", used=row["cost_used"], limit=row["cost_limit_usd"], remaining=row["cost_remaining"],
            exceeded=row["cost_used"] >= row["cost_limit_usd"], thresholds_crossed=row["cost_crossed"],
        ))
    period = Period(kind=row["budget_period"], start=_utc_midnight(row["period_start"]),
                    end=_utc_midnight(row["period_end"]))
    tokens = limits[0]
    return Quota(tokens_used=tokens.used, tokens_limit=tokens.limit, tokens_remaining=tokens.remaining,
                 exceeded=any(limit.exceeded for limit in limits), period=period, limits=limits)


def _utc_midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=UTC)
