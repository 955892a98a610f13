"""Builders of contract events (docs/CONTRACT.md): a validated CloudEvent, serialised once.

Each builder checks what it built against the worker's own data models, so an event the
producer accepts is one the worker accepts; a bad value is an `InvalidEvent` naming the
field, before anything reaches the spool.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from worker.contract.events import Envelope, MessageCreatedData, UsageRecordedData
from worker.contract.names import MESSAGE_CREATED, USAGE_RECORDED

COST_FRACTION_DIGITS = 12
_COST_QUANTUM = Decimal(1).scaleb(-COST_FRACTION_DIGITS)


class InvalidEvent(ValueError):
    """A builder was given a value the contract refuses; the message names the field, never the value."""


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One event ready to publish: its id, its routing key (= its type) and its JSON body."""

    id: str
    type: str
    body: bytes


def cost_text(cost_usd: Decimal) -> str:
    """`cost_usd` as the contract's decimal string: non-negative, at most 12 digits after the point.

    More digits are rounded half-even to 12 (a float cost such as 1.35e-05 has a few;
    a sub-picodollar remainder is not money anyone bills).
    """
    if not isinstance(cost_usd, Decimal):
        raise InvalidEvent("cost_usd must be a Decimal")
    if not cost_usd.is_finite():
        raise InvalidEvent("cost_usd must be a finite number")
    if cost_usd < 0:
        raise InvalidEvent("cost_usd must not be negative")
    exponent = cost_usd.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -COST_FRACTION_DIGITS:
        try:
            cost_usd = cost_usd.quantize(_COST_QUANTUM)
        except InvalidOperation:
            raise InvalidEvent("cost_usd has too many digits") from None
    if cost_usd == 0:
        return "0"
    return format(cost_usd.normalize(), "f")


def message_created(
    *,
    source: str,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str,
    content: str,
    model: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    metadata: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    conversation_title: str | None = None,
    cost_usd: Decimal | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> OutgoingEvent:
    """A `message.created` event; its id defaults to the message id (one message, one event)."""
    data: dict[str, Any] = {
        "message_id": str(message_id),
        "conversation_id": str(conversation_id),
        "user_id": str(user_id),
        "role": role,
        "content": content,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }
    _put(data, "model", model)
    _put(data, "metadata", metadata)
    _put(data, "created_at", _timestamp(created_at, "created_at") if created_at is not None else None)
    _put(data, "conversation_title", conversation_title)
    _put(data, "cost_usd", cost_text(cost_usd) if cost_usd is not None else None)
    return _build(MESSAGE_CREATED, MessageCreatedData, data, source, event_id or str(message_id), time)


def usage_recorded(
    *,
    source: str,
    event_id: str,
    user_id: uuid.UUID,
    model: str,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    conversation_id: uuid.UUID | None = None,
    message_id: uuid.UUID | None = None,
    api_key_id: uuid.UUID | None = None,
    request_id: str | None = None,
    cost_usd: Decimal | None = None,
    time: datetime | None = None,
) -> OutgoingEvent:
    """A `usage.recorded` event. `event_id` is required: a retried report must reuse it to count once."""
    data: dict[str, Any] = {
        "user_id": str(user_id),
        "model": model,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }
    _put(data, "conversation_id", str(conversation_id) if conversation_id is not None else None)
    _put(data, "message_id", str(message_id) if message_id is not None else None)
    _put(data, "api_key_id", str(api_key_id) if api_key_id is not None else None)
    _put(data, "request_id", request_id)
    _put(data, "cost_usd", cost_text(cost_usd) if cost_usd is not None else None)
    return _build(USAGE_RECORDED, UsageRecordedData, data, source, event_id, time)


def _put(data: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        data[name] = value


def _timestamp(value: datetime, name: str) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent(f"{name} must be a datetime with a time zone")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _build(
    event_type: str, data_model: type[BaseModel], data: dict[str, Any], source: str, event_id: str, time: datetime | None
) -> OutgoingEvent:
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": _timestamp(time or datetime.now(UTC), "time"),
        "datacontenttype": "application/json",
        "data": data,
    }
    _check(Envelope, envelope, "")
    _check(data_model, data, "data.")
    try:
        body = orjson.dumps(envelope)
    except TypeError:
        raise InvalidEvent("data.metadata holds a value JSON cannot carry") from None
    return OutgoingEvent(id=event_id, type=event_type, body=body)


def _check(model: type[BaseModel], value: dict[str, Any], prefix: str) -> None:
    try:
        model.model_validate(value)
    except ValidationError as exc:
        fields = ", ".join(
            f"{prefix}{'.'.join(str(part) for part in error['loc'])}: {_rule(error)}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise InvalidEvent(fields) from None


def _rule(error: Any) -> str:
    # A parser's message may quote the offending input (a UUID's bad character): name the rule only.
    return error["type"] if error["type"].endswith("_parsing") else error["msg"]
