"""Conversations and their messages, newest conversation first, messages in order; keyset pages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from worker.api.dependencies import CallerDep, Repo, Uow, VisibleUser, not_found
from worker.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from worker.api.problems import responses
from worker.api.schemas import ConversationOut, ConversationPage, MessageOut, MessagePage, NewConversation
from worker.db.models import Conversation

router = APIRouter(tags=["conversations"], responses=responses(401, 404, 422, 503))

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (at most {MAX_LIMIT}).")]
Cursor = Annotated[
    str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$", description="`next_cursor` of the previous page.")
]


@router.get("/users/{user_id}/conversations", response_model=ConversationPage)
async def list_conversations(
    user_id: VisibleUser, repo: Repo, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> ConversationPage:
    """The user's conversations, most recently updated first."""
    after = decode_cursor(cursor, (datetime, uuid.UUID)) if cursor else None
    rows = await repo.conversations(user_id, after, limit)
    items = [ConversationOut(**row) for row in rows]
    last = items[-1] if len(items) == limit else None
    return ConversationPage(items=items, next_cursor=encode_cursor(last.updated_at, last.id) if last else None)


@router.post("/users/{user_id}/conversations", status_code=201, response_model=ConversationOut)
async def create_conversation(user_id: VisibleUser, body: NewConversation, uow: Uow, repo: Repo) -> ConversationOut:
    """Start a conversation for the user."""
    conversation = Conversation(id=uuid.uuid4(), user_id=user_id, title=body.title, model=body.model)
    uow.conversations.add(conversation)
    await uow.commit()
    row = await repo.conversation(conversation.id)
    return ConversationOut(**row)


async def _visible_conversation(conversation_id: uuid.UUID, who: CallerDep, repo: Repo) -> ConversationOut:
    row = await repo.conversation(conversation_id)
    if row is None or not who.may_see(row["user_id"]):
        raise not_found("conversation")
    return ConversationOut(**row)


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(conversation_id: uuid.UUID, who: CallerDep, repo: Repo) -> ConversationOut:
    """The conversation with its `total_tokens`."""
    return await _visible_conversation(conversation_id, who, repo)


@router.get("/conversations/{conversation_id}/messages", response_model=MessagePage)
async def list_messages(
    conversation_id: uuid.UUID, who: CallerDep, repo: Repo, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> MessagePage:
    """The conversation's messages in `created_at` order."""
    after = decode_cursor(cursor, (datetime, uuid.UUID)) if cursor else None
    await _visible_conversation(conversation_id, who, repo)
    rows = await repo.messages(conversation_id, after, limit)
    items = [MessageOut(**row) for row in rows]
    last = items[-1] if len(items) == limit else None
    return MessagePage(items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None)
