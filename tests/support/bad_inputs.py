"""A corpus of inputs the worker must dead-letter, each with the reason the contract gives."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tests.support.events import body, message_created, usage_recorded


@dataclass(frozen=True)
class BadInput:
    name: str
    body: bytes
    reason: str
    routing_key: str = "message.created"
    content_type: str | None = "application/cloudevents+json"


def _msg(user_id: uuid.UUID, **data: object) -> bytes:
    event = message_created(user_id)
    event["data"].update(data)
    return body(event)


def _envelope(user_id: uuid.UUID, **changes: object) -> bytes:
    event = message_created(user_id)
    event.update(changes)
    for key, value in list(changes.items()):
        if value is None:
            del event[key]
    return body(event)


def _nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def corpus(user_id: uuid.UUID) -> list[BadInput]:
    """Bad inputs for an existing user, so only the defect named decides the outcome."""
    deep = b'{"k":' * 3000 + b"1" + b"}" * 3000
    usage_without_model = usage_recorded(user_id)
    del usage_without_model["data"]["model"]
    return [
        BadInput("empty-body", b"", "invalid_json"),
        BadInput("not-json", b"this is not json", "invalid_json"),
        BadInput("invalid-utf8", b'{"id": "\xff\xfe"}', "invalid_json"),
        BadInput("nan", b'{"specversion": "1.0", "x": NaN}', "invalid_json"),
        BadInput("json-array", b"[1, 2, 3]", "invalid_json"),
        BadInput("json-scalar", b"12", "invalid_json"),
        BadInput("truncated", _msg(user_id)[:-10], "invalid_json"),
        BadInput("missing-data", _envelope(user_id, data=None), "invalid_event"),
        BadInput("wrong-specversion", _envelope(user_id, specversion="0.3"), "invalid_event"),
        BadInput("missing-specversion", _envelope(user_id, specversion=None), "invalid_event"),
        BadInput("time-without-offset", _envelope(user_id, time="2026-11-28T07:00:00"), "invalid_event"),
        BadInput("missing-message-id", body({**message_created(user_id), "data": {"user_id": str(user_id)}}), "invalid_event"),
        BadInput("string-for-integer", _msg(user_id, prompt_tokens="5"), "invalid_event"),
        BadInput("bool-for-integer", _msg(user_id, completion_tokens=True), "invalid_event"),
        BadInput("float-for-integer", _msg(user_id, prompt_tokens=5.5), "invalid_event"),
        BadInput("negative-tokens", _msg(user_id, prompt_tokens=-1), "invalid_event"),
        BadInput("tokens-over-int32", _msg(user_id, completion_tokens=2**31), "invalid_event"),
        BadInput("huge-integer", _msg(user_id, prompt_tokens=10**30), "invalid_event"),
        BadInput("bad-uuid", _msg(user_id, conversation_id="not-a-uuid"), "invalid_event"),
        BadInput("unknown-role", _msg(user_id, role="wizard"), "invalid_event"),
        BadInput("nul-in-content", _msg(user_id, content="a\x00b"), "invalid_event"),
        BadInput("nul-in-metadata", _msg(user_id, metadata={"tool": "x\x00"}), "invalid_event"),
        BadInput("lone-surrogate", _msg(user_id, content="x").replace(b'"content":"x"', b'"content":"\\ud800"'), "invalid_event"),
        BadInput("metadata-65-deep", _msg(user_id, metadata=_nested(65)), "invalid_event"),
        BadInput("metadata-thousands-deep", _msg(user_id, metadata={}).replace(b'"metadata":{}', b'"metadata":' + deep), "invalid_event"),
        BadInput("content-over-1mib", _msg(user_id, content="x" * (1024 * 1024 + 1)), "invalid_event"),
        BadInput("body-over-4mib", _msg(user_id, metadata={"blob": "y" * (4 * 1024 * 1024)}), "invalid_event"),
        BadInput("usage-without-model", body(usage_without_model), "invalid_event", routing_key="usage.recorded"),
        BadInput("wrong-content-type", _msg(user_id), "invalid_event", content_type="text/plain"),
        BadInput("unknown-type", _envelope(user_id, type="message.deleted"), "unknown_type"),
        BadInput("type-disagrees-with-routing-key", _envelope(user_id, type="chat.started"), "unknown_type",
                 routing_key="usage.recorded"),
    ]
