"""Bytes off the wire to a validated `Event`, or `EventRejected` with the contract's reason.

Checks run in the contract's order: body, envelope, type, data. Error details name the
field and the rule, never the offending value (it may be user content).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from worker.contract.events import (
    Envelope,
    Event,
    MessageCreatedData,
    MessageCreatedEnvelope,
    UsageRecordedData,
    UsageRecordedEnvelope,
)
from worker.contract.names import ACCEPTED_CONTENT_TYPES, MESSAGE_CREATED, USAGE_RECORDED
from worker.contract.reasons import Reason
from worker.errors import EventRejected

DATA_MODELS: dict[str, type[BaseModel]] = {
    MESSAGE_CREATED: MessageCreatedData,
    USAGE_RECORDED: UsageRecordedData,
}
# Envelope and data in one model, for the common case: a known type, clean strings.
WHOLE_MODELS: dict[str, type[Envelope]] = {
    MESSAGE_CREATED: MessageCreatedEnvelope,
    USAGE_RECORDED: UsageRecordedEnvelope,
}
MAX_METADATA_DEPTH = 64
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Limits:
    """Size limits from the settings."""

    max_body_bytes: int = 4 * 1024 * 1024
    max_content_bytes: int = 1024 * 1024


def decode_event(body: bytes, content_type: str | None, received_at: datetime, limits: Limits) -> Event:
    """Validate one delivery's body and return the event it carries."""
    document, clean = _parse_body(body, content_type, limits)
    event_type = document.get("type")
    whole = WHOLE_MODELS.get(event_type) if clean and isinstance(event_type, str) else None
    if whole is not None:
        try:
            envelope = whole.model_validate(document)
        except ValidationError:
            pass  # The step-by-step path below says what is wrong, in the contract's order.
        else:
            _check_depth(envelope.data.metadata if isinstance(envelope.data, MessageCreatedData) else None)
            return _event(envelope, envelope.data, received_at, limits)
    envelope = _validate(Envelope, document, prefix="")
    if not clean:
        _check_strings(
            {k: v for k, v in document.items() if k != "data" and k in Envelope.model_fields}, "", depth_limit=None
        )
    data_model = DATA_MODELS.get(envelope.type)
    if data_model is None:
        raise EventRejected(Reason.UNKNOWN_TYPE, f"type {_quote(envelope.type)} is not handled by this worker")
    if clean:
        _check_depth(envelope.data.get("metadata"))
    else:
        _check_data_strings(envelope.data)
    data = _validate(data_model, envelope.data, prefix="data.")
    return _event(envelope, data, received_at, limits)


def _event(envelope: Envelope, data: Any, received_at: datetime, limits: Limits) -> Event:
    if isinstance(data, MessageCreatedData):
        if len(data.content.encode("utf-8")) > limits.max_content_bytes:
            raise EventRejected(Reason.INVALID_EVENT, f"data.content is over {limits.max_content_bytes} bytes")
    return Event(
        id=envelope.id,
        source=envelope.source,
        type=envelope.type,
        time=envelope.time or received_at,
        data=data,
        published_at=envelope.time,
    )


def _parse_body(body: bytes, content_type: str | None, limits: Limits) -> tuple[dict[str, Any], bool]:
    """The JSON object, and whether its strings are known clean without walking them.

    orjson refuses lone surrogates and raw control characters, so a body it parsed can
    hold a NUL character only through the escape `\\u0000`.
    """
    if content_type and content_type.split(";", 1)[0].strip().lower() not in ACCEPTED_CONTENT_TYPES:
        raise EventRejected(Reason.INVALID_EVENT, "content type is not application/cloudevents+json or application/json")
    if len(body) > limits.max_body_bytes:
        raise EventRejected(Reason.INVALID_EVENT, f"body is {len(body)} bytes, over the {limits.max_body_bytes} limit")
    if not body:
        raise EventRejected(Reason.INVALID_JSON, "body is empty")
    try:
        document = orjson.loads(body)
        clean = b"\\u0000" not in body
    except orjson.JSONDecodeError:
        document, clean = _parse_leniently(body), False
    if not isinstance(document, dict):
        raise EventRejected(Reason.INVALID_JSON, f"body is a JSON {_json_kind(document)}, not an object")
    return document, clean


def _parse_leniently(body: bytes) -> Any:
    """Second opinion when orjson refuses: JSON it cannot represent (lone surrogate escapes,
    integers past 64 bits, nesting past its limit) is still JSON, so it goes on to validation."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventRejected(Reason.INVALID_JSON, f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise EventRejected(Reason.INVALID_EVENT, "body is nested too deeply") from None
    except ValueError as exc:
        position = getattr(exc, "pos", None)
        where = f" at character {position}" if position is not None else ""
        raise EventRejected(Reason.INVALID_JSON, f"body is not valid JSON{where}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _validate(model: type[BaseModel], value: dict[str, Any], prefix: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise EventRejected(Reason.INVALID_EVENT, _describe(exc, prefix)) from None


def _describe(exc: ValidationError, prefix: str) -> str:
    """Field paths and rules only: pydantic's own text would echo the input."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        location = prefix + ".".join(str(part) for part in error["loc"]) if error["loc"] else prefix.rstrip(".")
        parts.append(f"{location or 'body'}: {error['msg']}")
    return _truncate("; ".join(parts))


def _check_data_strings(data: dict[str, Any]) -> None:
    metadata = data.get("metadata")
    _check_strings({k: v for k, v in data.items() if k != "metadata"}, "data.", depth_limit=None)
    if metadata is not None:
        _check_strings(metadata, "data.metadata", depth_limit=MAX_METADATA_DEPTH)


def _check_depth(metadata: Any) -> None:
    if isinstance(metadata, dict | list):
        _check_strings(metadata, "data.metadata", depth_limit=MAX_METADATA_DEPTH)


def _check_strings(value: Any, path: str, depth_limit: int | None) -> None:
    for problem in _string_problems(value, path, depth_limit):
        raise EventRejected(Reason.INVALID_EVENT, problem)


def _string_problems(root: Any, root_path: str, depth_limit: int | None) -> Iterator[str]:
    # Iterative walk: a hostile document must not exhaust the interpreter's stack.
    stack: list[tuple[Any, str, int]] = [(root, root_path, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                yield f"{path or 'a string'} contains a NUL character"
            elif _has_lone_surrogate(value):
                yield f"{path or 'a string'} contains a lone surrogate"
            continue
        if isinstance(value, dict | list):
            if depth_limit is not None and depth > depth_limit:
                yield f"{root_path} is nested deeper than {depth_limit} levels"
                return
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and ("\x00" in key or _has_lone_surrogate(key)):
                    yield f"{path} has a key with a NUL character or lone surrogate"
                stack.append((item, f"{path}.{key}" if isinstance(key, str) and path else str(key), depth + 1))


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _quote(text: str) -> str:
    return repr(_truncate(text, 60))


def _truncate(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
