"""API keys: issued by the administrator (plaintext shown once), listed and revoked by their user."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from worker.api.credentials import key_hash, new_api_key
from worker.api.dependencies import AdminDep, CallerDep, Repo, Uow, VisibleUser, not_found
from worker.api.problems import responses
from worker.api.schemas import ApiKeyOut, CreatedApiKey, NewApiKey
from worker.db.models import ApiKey

router = APIRouter(tags=["api-keys"], responses=responses(401, 404, 422, 503))


@router.post(
    "/users/{user_id}/api-keys", status_code=201, response_model=CreatedApiKey, responses=responses(403)
)
async def create_api_key(user_id: VisibleUser, body: NewApiKey, _: AdminDep, uow: Uow, repo: Repo) -> CreatedApiKey:
    """Issue a key for the user; the response is the only place its plaintext ever appears."""
    key = new_api_key()
    api_key = ApiKey(id=uuid.uuid4(), user_id=user_id, key_hash=key_hash(key), name=body.name, expires_at=body.expires_at)
    uow.api_keys.add(api_key)
    await uow.commit()
    row = next(r for r in await repo.api_keys(user_id) if r["id"] == api_key.id)
    return CreatedApiKey(**row, key=key)


@router.get("/users/{user_id}/api-keys", response_model=list[ApiKeyOut])
async def list_api_keys(user_id: VisibleUser, repo: Repo) -> list[ApiKeyOut]:
    """The user's keys (never the key itself)."""
    return [ApiKeyOut(**row) for row in await repo.api_keys(user_id)]


@router.delete("/api-keys/{key_id}", status_code=204, response_class=Response)
async def revoke_api_key(key_id: uuid.UUID, who: CallerDep, uow: Uow, repo: Repo) -> Response:
    """Revoke a key; the next request made with it is refused."""
    if not who.may_see(await repo.api_key_owner(key_id)) or not await repo.revoke(key_id):
        raise not_found("API key")
    await uow.commit()
    return Response(status_code=204)
