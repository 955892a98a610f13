"""Builders of contract events for tests; every id is fresh so tests never collide."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "contract" / "examples"
SOURCE = "llm-gateway/test"


def example(name: str) -> dict[str, Any]:
    """One of the contract's example events (docs/contract/examples)."""
    return orjson.loads((EXAMPLES / f"{name}.json").read_bytes())


def message_created(
    user_id: uuid.UUID | str,
    *,
    conversation_id: uuid.UUID | str | None = None,
    message_id: uuid.UUID | str | None = None,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    event_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    payload = {
        "message_id": str(message_id or uuid.uuid4()),
        "conversation_id": str(conversation_id or uuid.uuid4()),
        "user_id": str(user_id),
        "role": "assistant",
        "content": "hello from a test",
        "model": "gpt-test",
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        **data,
    }
    return envelope("message.created", payload, event_id=event_id)


def usage_recorded(
    user_id: uuid.UUID | str,
    *,
    prompt_tokens: int = 100,
    completion_tokens: int = 0,
    event_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    payload = {
        "user_id": str(user_id),
        "model": "embed-test",
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        **{k: str(v) if isinstance(v, uuid.UUID) else v for k, v in data.items()},
    }
    return envelope("usage.recorded", payload, event_id=event_id)


def envelope(event_type: str, data: Any, *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or f"evt-{uuid.uuid4()}",
        "source": SOURCE,
        "type": event_type,
        "time": "2026-11-28T07:00:00Z",
        "data": data,
    }


def body(event: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(event)
    except TypeError:  # integers past 64 bits, on purpose in bad-input tests
        return json.dumps(event, separators=(",", ":")).encode()


def tokens_of(event: dict[str, Any]) -> int:
    return event["data"].get("prompt_tokens", 0) + event["data"].get("completion_tokens", 0)


def cost_of(event: dict[str, Any]) -> Decimal | None:
    """The `cost_usd` the event carries, exactly as written (a string or a JSON number); None without one."""
    cost = event["data"].get("cost_usd")
    return None if cost is None else Decimal(str(cost))
