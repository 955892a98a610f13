"""Request and response bodies (pydantic v2), separate from the ORM models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

BIGINT_MAX = 2**63 - 1
# PostgreSQL text cannot hold NUL; refusing it here keeps it from becoming a database error.
NO_NUL = r"^[^\x00]*$"


class Body(BaseModel):
    """A request body: unknown fields are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class NewUser(Body):
    email: str = Field(min_length=3, max_length=255, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$")
    password: str = Field(min_length=8, max_length=1024)
    tier: str | None = Field(default=None, min_length=1, max_length=50, pattern=NO_NUL)
    tokens_limit: int | None = Field(default=None, ge=0, le=BIGINT_MAX)
    external_id: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=NO_NUL,
        description="The gateway's name for the user (e.g. LiteLLM's user id): the user's id becomes its UUID "
        "by the producer's rule (`worker.producer.identity.project_uuid`).",
    )


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    tier: str
    tokens_used: int
    tokens_limit: int
    tokens_remaining: int
    created_at: datetime


class Quota(BaseModel):
    tokens_used: int
    tokens_limit: int
    tokens_remaining: int
    exceeded: bool


class NewConversation(Body):
    title: str | None = Field(default=None, max_length=255, pattern=NO_NUL)
    model: str = Field(min_length=1, max_length=100, pattern=NO_NUL)


class ConversationOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    title: str | None
    model: str
    total_tokens: int
    created_at: datetime
    updated_at: datetime


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class MessageOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    role: str
    content: str
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class SearchHit(MessageOut):
    rank: float


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None


class UsageGroup(BaseModel):
    key: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    records: int


class Usage(BaseModel):
    group_by: Literal["day", "model"]
    groups: list[UsageGroup]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class NewApiKey(Body):
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    expires_at: AwareDatetime | None = None


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    is_active: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class CreatedApiKey(ApiKeyOut):
    key: str = Field(description="The plaintext key; shown once, only its hash is stored.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


