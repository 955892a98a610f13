"""Request dependencies: the Unit of Work (one connection, one transaction) and the caller."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from worker.api.credentials import key_hash, looks_like_api_key
from worker.api.problems import ApiError
from worker.api.repository import ApiRepository
from worker.db.unit_of_work import UnitOfWork

_bearer = HTTPBearer(auto_error=False, description="The admin token, or a user's API key.")


async def unit_of_work(request: Request) -> AsyncIterator[UnitOfWork]:
    """One Unit of Work per request; handlers that write commit it, anything else rolls back."""
    async with UnitOfWork(request.app.state.engine) as uow:
        yield uow


Uow = Annotated[UnitOfWork, Depends(unit_of_work)]


# NOTE: every dependency is `async def`: FastAPI runs a plain `def` one on a worker thread.
async def repository(uow: Uow) -> ApiRepository:
    return ApiRepository(uow.sql)


Repo = Annotated[ApiRepository, Depends(repository)]


@dataclass(frozen=True)
class Caller:
    """Who is asking: the administrator, or the owner of one API key."""

    admin: bool
    user_id: uuid.UUID | None = None

    def may_see(self, owner: uuid.UUID | None) -> bool:
        return self.admin or (owner is not None and owner == self.user_id)


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The bearer token; 401 when there is none."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "A bearer token is required.")
    return credentials.credentials


def is_admin(request: Request, token: str) -> bool:
    admin_token: str = request.app.state.admin_token
    return hmac.compare_digest(token.encode(), admin_token.encode())


def key_usable(row: dict | None) -> bool:
    """Whether a key's row (`is_active`, `expires_at`) lets it in right now."""
    return row is not None and row["is_active"] and (row["expires_at"] is None or row["expires_at"] > datetime.now(UTC))


INVALID_TOKEN = "The token is not valid."


async def caller(request: Request, repo: Repo, credentials: Credentials) -> Caller:
    """The caller behind `Authorization: Bearer`; 401 for none, an unknown, inactive or expired key."""
    token = bearer_token(credentials)
    if is_admin(request, token):
        return Caller(admin=True)
    if looks_like_api_key(token):
        row = await repo.api_key(key_hash(token))
        if key_usable(row):
            return Caller(admin=False, user_id=row["user_id"])
    raise ApiError(401, INVALID_TOKEN)


CallerDep = Annotated[Caller, Depends(caller)]


async def require_admin(who: CallerDep) -> Caller:
    if not who.admin:
        raise ApiError(403, "Only the administrator may do this.")
    return who


AdminDep = Annotated[Caller, Depends(require_admin)]


def not_found(what: str) -> ApiError:
    return ApiError(404, f"No such {what}.")


async def visible_user(user_id: uuid.UUID, who: CallerDep, repo: Repo) -> uuid.UUID:
    """The path's user, if the caller may see it; another user's answers 404 like a missing one."""
    if not who.may_see(user_id) or not await repo.user_exists(user_id):
        raise not_found("user")
    return user_id


VisibleUser = Annotated[uuid.UUID, Depends(visible_user)]
