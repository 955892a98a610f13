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
    detail: str | None = None
    """The whole `x-error-detail`, where a case makes sure nothing of the value is echoed."""


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


def _with_metadata_text(user_id: uuid.UUID, text: bytes) -> bytes:
    return _msg(user_id, metadata={}).replace(b'"metadata":{}', b'"metadata":' + text)


def corpus(user_id: uuid.UUID) -> list[BadInput]:
    """Bad inputs for an existing user, so only the defect named decides the outcome."""
    deep = b'{"k":' * 3000 + b"1" + b"}" * 3000
    out_of_utc_range = "Value error, must lie strictly between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z"
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
        BadInput("time-before-year-1-in-utc", _envelope(user_id, time="0001-01-01T00:00:00+01:00"), "invalid_event",
                 detail=f"time: {out_of_utc_range}"),
        BadInput("created-at-after-year-9999-in-utc", _msg(user_id, created_at="9999-12-31T23:59:59-01:00"),
                 "invalid_event", detail=f"data.created_at: {out_of_utc_range}"),
        BadInput("created-at-on-the-instant-stored-as-infinity", _msg(user_id, created_at="9999-12-31T23:59:59.999999Z"),
                 "invalid_event", detail=f"data.created_at: {out_of_utc_range}"),
        BadInput("metadata-number-beyond-numeric", _with_metadata_text(user_id, b'{"n":1e131072}'), "invalid_event"),
        BadInput("metadata-key-with-nul", _msg(user_id, metadata={"secret-key\x00": 1}), "invalid_event",
                 detail="data.metadata has a key that contains a NUL character or a lone surrogate"),
        BadInput("uuid-with-a-telling-character", _msg(user_id, conversation_id=f"{uuid.uuid4()}"[:-1] + "Q"),
                 "invalid_event", detail="data.conversation_id: Input should be a valid UUID"),
        BadInput("unknown-type", _envelope(user_id, type="message.deleted"), "unknown_type",
                 detail="type is not one this worker handles"),
        BadInput("type-disagrees-with-routing-key", _envelope(user_id, type="chat.started"), "unknown_type",
                 routing_key="usage.recorded"),
    ]
