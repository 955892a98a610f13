"""Which LiteLLM fields fill which contract fields (docs/CONTRACT.md, "LiteLLM mapping").

Pure: from the arguments LiteLLM passes a success hook to the events to publish. It reads
LiteLLM's objects by name only and does not import LiteLLM, so the rule is testable alone.

One completed call gives at most three events, every id derived from LiteLLM's call id (a
retried log call repeats them and the worker counts it once):
- `message.created` for the request's new user message (the last `user` message), 0 tokens;
- `message.created` for the response's first choice, 0 tokens, the call's usage in `metadata`;
- `usage.recorded` with the call's tokens and `response_cost` as `cost_usd`.
Tokens are counted once, by the usage event: message events grow `tokens_used` too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from worker.producer.events import OutgoingEvent, message_created, usage_recorded
from worker.producer.identity import derived_uuid, project_uuid

MAX_MODEL_CHARS = 100
MAX_REQUEST_ID_CHARS = 255


class NotRecorded(Exception):
    """The call cannot be recorded (no user to count it for, no call id); the text says why."""


def events_for_call(
    kwargs: Mapping[str, Any], response: Any, start_time: Any, end_time: Any, *, source: str
) -> list[OutgoingEvent]:
    """The events of one successful LiteLLM call, in publishing order."""
    call_id = kwargs.get("litellm_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise NotRecorded("the call has no litellm_call_id")
    logged = kwargs.get("standard_logging_object") or {}
    metadata = _metadata(kwargs)
    user_id = user_of(kwargs, logged, metadata)
    conversation_id = conversation_of(kwargs, metadata, call_id)
    model = str(logged.get("model") or kwargs.get("model") or "unknown")[:MAX_MODEL_CHARS]
    prompt_tokens, completion_tokens = _usage(logged, response)
    cost = _cost(kwargs.get("response_cost", logged.get("response_cost")))
    started = _instant(start_time)
    ended = max(_instant(end_time), started)
    # A conversation reads in the order its calls were made: the reply right after its prompt.
    # (LiteLLM's end time of a stream is when it logged it, which may be after the next call began.)
    replied = started + timedelta(microseconds=1)

    events: list[OutgoingEvent] = []
    prompt = _new_user_message(kwargs.get("messages"))
    if prompt is not None:
        events.append(message_created(
            source=source, message_id=derived_uuid("litellm", call_id, "request"), conversation_id=conversation_id,
            user_id=user_id, role="user", content=prompt, model=model, created_at=started, time=started,
            metadata={"litellm_call_id": call_id},
        ))
    reply = _reply(response)
    reply_id = None
    if reply is not None:
        content, details = reply
        reply_id = derived_uuid("litellm", call_id, "response")
        details.update({
            "litellm_call_id": call_id,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "model_group": logged.get("model_group"),
            "completed_at": ended.isoformat(),
        })
        if cost is not None:
            details["response_cost"] = format(cost, "f")
        events.append(message_created(
            source=source, message_id=reply_id, conversation_id=conversation_id, user_id=user_id,
            role="assistant", content=content, model=model, created_at=replied, time=ended,
            metadata={key: value for key, value in details.items() if value is not None},
        ))
    request_id = logged.get("id") or call_id
    events.append(usage_recorded(
        source=source, event_id=str(derived_uuid("litellm", call_id, "usage")), user_id=user_id, model=model,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, conversation_id=conversation_id,
        message_id=reply_id, request_id=str(request_id)[:MAX_REQUEST_ID_CHARS], cost_usd=cost, time=ended,
    ))
    return events


def user_of(kwargs: Mapping[str, Any], logged: Mapping[str, Any], metadata: Mapping[str, Any]) -> uuid.UUID:
    """The proxy key's user, else the end user, else the request's `user`, as a project UUID."""
    logged_metadata = logged.get("metadata") or {}
    for candidate in (
        metadata.get("user_api_key_user_id"),
        logged_metadata.get("user_api_key_user_id"),
        logged.get("end_user"),
        metadata.get("user_api_key_end_user_id"),
        logged_metadata.get("user_api_key_end_user_id"),
        kwargs.get("user"),
        (kwargs.get("optional_params") or {}).get("user"),
    ):
        if isinstance(candidate, str) and candidate:
            return project_uuid(candidate)
    raise NotRecorded("the call names no user (user_api_key_user_id, end_user or user)")


def conversation_of(kwargs: Mapping[str, Any], metadata: Mapping[str, Any], call_id: str) -> uuid.UUID:
    """`metadata.conversation_id`, else LiteLLM's session id (same rule as users), else one per call."""
    requester = metadata.get("requester_metadata") or {}
    session = (kwargs.get("litellm_params") or {}).get("litellm_session_id")
    for candidate in (metadata.get("conversation_id"), requester.get("conversation_id"), session):
        if isinstance(candidate, str) and candidate:
            return project_uuid(candidate)
    return derived_uuid("litellm", call_id, "conversation")


def _metadata(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    params = kwargs.get("litellm_params") or {}
    metadata = params.get("metadata") or params.get("litellm_metadata") or {}
    return metadata if isinstance(metadata, Mapping) else {}


def _usage(logged: Mapping[str, Any], response: Any) -> tuple[int, int]:
    prompt, completion = logged.get("prompt_tokens"), logged.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        usage = _field(response, "usage")
        prompt, completion = _field(usage, "prompt_tokens") or 0, _field(usage, "completion_tokens") or 0
    return int(prompt), int(completion)


def _cost(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        return None
    return cost if cost.is_finite() and cost >= 0 else None


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        # LiteLLM passes naive local times: astimezone reads a naive one as local.
        return value.astimezone(UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)


def _new_user_message(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _text(message.get("content"))
    return None


def _reply(response: Any) -> tuple[str, dict[str, Any]] | None:
    choices = _field(response, "choices")
    if not choices:
        return None
    message = _field(choices[0], "message")
    if message is None:
        return None
    details: dict[str, Any] = {"finish_reason": _field(choices[0], "finish_reason")}
    tool_calls = _field(message, "tool_calls")
    if tool_calls:
        details["tool_calls"] = [_plain(call) for call in tool_calls]
    return _text(_field(message, "content")), details


def _text(content: Any) -> str:
    """A message's text: a string as is, the text parts of a multi-part content joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else value


def _field(value: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)
