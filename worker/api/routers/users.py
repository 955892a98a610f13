"""Users: creation (admin), the user with its counters, and the gateway's quota check."""

from __future__ import annotations

import uuid

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
    bearer_token,
    is_admin,
    key_usable,
    not_found,
)
from worker.api.problems import ApiError, responses
from worker.api.schemas import NewUser, Quota, UserOut
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
    return UserOut(**row, tokens_remaining=max(row["tokens_limit"] - row["tokens_used"], 0))


@router.get("/users/{user_id}", response_model=UserOut, responses=responses(404))
async def get_user(user_id: uuid.UUID, who: CallerDep, repo: Repo) -> UserOut:
    """The user with `tokens_used`, `tokens_limit` and `tokens_remaining`."""
    if not who.may_see(user_id):
        raise not_found("user")
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
        if row["tokens_used"] is None:  # another user's, or none: the same answer
            row = None
    else:
        raise ApiError(401, INVALID_TOKEN)
    if row is None:
        raise not_found("user")
    used, limit = row["tokens_used"], row["tokens_limit"]
    return Quota(tokens_used=used, tokens_limit=limit, tokens_remaining=max(limit - used, 0), exceeded=used >= limit)
