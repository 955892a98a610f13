"""Bytes off the wire to a validated `Event`, or `EventRejected` with the contract's reason.

Checks run in the contract's order: body, envelope, type, data. Error details name the
field and the rule, never the offending value or any part of it (it may be user content).

`data.metadata` is stored as PostgreSQL jsonb, whose numbers are exact decimals: its JSON
text keeps every number in the digits it was sent with (a float or a 64-bit integer would
not), and a number jsonb cannot hold is refused here rather than failing in the database.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Container, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from worker.contract.events import COST_RULE, Envelope, Event, check_cost
from worker.contract.names import ACCEPTED_CONTENT_TYPES
from worker.contract.reasons import Reason
from worker.contract.types import EventTypes
from worker.errors import EventRejected

MAX_METADATA_DEPTH = 64
MAX_DETAIL_CHARS = 300
# Context entries of a pydantic error that are the rule's own parameters; any other entry
# (a parser's explanation, such as the character a UUID failed on) may quote the input.
RULE_CONTEXT = frozenset({"expected", "ge", "gt", "le", "lt", "min_length", "max_length", "class_name"})
# Rules of the pydantic errors whose message ends in such an explanation.
PARSER_RULES = {
    "uuid_parsing": "Input should be a valid UUID",
    "uuid_version": "Input should be a valid UUID",
    "datetime_parsing": "Input should be a valid datetime",
    "datetime_from_date_parsing": "Input should be a valid datetime",
    "datetime_object_invalid": "Input should be a valid datetime",
}
# PostgreSQL's numeric (jsonb's numbers): at most 131072 digits before the decimal point
# and 16383 after it, and an exponent the parser reads into half an int.
NUMERIC_MAX_WEIGHT = 131071
NUMERIC_MAX_SCALE = 16383
NUMERIC_MAX_EXPONENT = 2**30 - 1
_JSON_NUMBER = re.compile(r"-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?)(\d+))?")


@dataclass(frozen=True)
class Limits:
    """Size limits from the settings."""

    max_body_bytes: int = 4 * 1024 * 1024
    max_content_bytes: int = 1024 * 1024


def decode_event(
    body: bytes, content_type: str | None, received_at: datetime, limits: Limits, types: EventTypes
) -> Event:
    """Validate one delivery's body against the known `types` and return the event it carries."""
    document, clean = _parse_body(body, content_type, limits)
    known = types.get(document.get("type")) if clean else None
    if known is not None:
        # The common case, a known type with clean strings: envelope and data in one call.
        try:
            envelope = known.envelope_model.model_validate(document)
        except ValidationError:
            pass  # The step-by-step path below says what is wrong, in the contract's order.
        else:
            data = envelope.data
            inexact = _check_metadata(data.__dict__.get("metadata"))
            return _event(envelope, _exact_cost(data, document, body), received_at, limits, body, inexact)
    envelope = _validate(Envelope, document, prefix="")
    if not clean:
        envelope_fields = {k: v for k, v in document.items() if k != "data" and k in Envelope.model_fields}
        _check_fields(envelope_fields, "", Envelope.model_fields)
    event_type = types.get(envelope.type)
    if event_type is None:
        raise EventRejected(Reason.UNKNOWN_TYPE, "type is not one this worker handles")
    data_model = event_type.data_model
    if not clean:
        _check_fields({k: v for k, v in envelope.data.items() if k != "metadata"}, "data.", data_model.model_fields)
    inexact = _check_metadata(envelope.data.get("metadata"))
    data = _validate(data_model, envelope.data, prefix="data.")
    return _event(envelope, _exact_cost(data, document, body), received_at, limits, body, inexact)


def _event(
    envelope: Envelope, data: Any, received_at: datetime, limits: Limits, body: bytes, inexact: bool
) -> Event:
    metadata_json = None
    # Rules of fields, whichever type has them: `content` has a size limit, `metadata` is stored exactly.
    # NOTE: read from the model's `__dict__`: `getattr` of a field a model lacks goes through
    # pydantic's slow `__getattr__` (2.5 µs each, doubling a usage event's decoding).
    content = data.__dict__.get("content")
    if isinstance(content, str) and len(content.encode("utf-8")) > limits.max_content_bytes:
        raise EventRejected(Reason.INVALID_EVENT, f"data.content is over {limits.max_content_bytes} bytes")
    metadata = data.__dict__.get("metadata")
    if metadata is not None:
        metadata_json = _exact_metadata_json(body) if inexact else orjson.dumps(metadata).decode()
    return Event(
        id=envelope.id,
        source=envelope.source,
        type=envelope.type,
        time=envelope.time or received_at,
        data=data,
        published_at=envelope.time,
        metadata_json=metadata_json,
    )


def _exact_cost(data: Any, document: dict[str, Any], body: bytes) -> Any:
    """`data` with a `cost_usd` sent as a JSON number carrying the body's own digits (a float may not)."""
    raw = document["data"].get("cost_usd")
    if not isinstance(raw, float):
        return data
    try:
        exact = check_cost(json.loads(body, parse_float=Decimal)["data"]["cost_usd"])
    except ValueError:
        raise EventRejected(Reason.INVALID_EVENT, f"data.cost_usd: {COST_RULE}") from None
    return data.model_copy(update={"cost_usd": exact})


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
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_integer)
    except RecursionError:
        raise EventRejected(Reason.INVALID_EVENT, "body is nested too deeply") from None
    except ValueError as exc:
        position = getattr(exc, "pos", None)
        where = f" at character {position}" if position is not None else ""
        raise EventRejected(Reason.INVALID_JSON, f"body is not valid JSON{where}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int | float:
    # Python refuses to convert integers of thousands of digits; like one past 64 bits from
    # orjson, such a number becomes a float here, and metadata takes its digits from the body.
    try:
        return int(text)
    except ValueError:
        return math.inf


def _exact_metadata_json(body: bytes) -> str:
    """`data.metadata` as JSON text, each number in the body's own digits."""
    try:
        document = json.loads(body, parse_float=_numeric, parse_int=_numeric)
    except RecursionError:
        raise EventRejected(Reason.INVALID_EVENT, "body is nested too deeply") from None
    try:
        return orjson.dumps(document["data"]["metadata"]).decode()
    except orjson.JSONEncodeError:
        # Its strings, keys and depth are checked: only a number out of numeric's range is left.
        raise EventRejected(
            Reason.INVALID_EVENT,
            f"data.metadata holds a number beyond PostgreSQL's numeric range "
            f"({NUMERIC_MAX_WEIGHT + 1} digits before the decimal point, {NUMERIC_MAX_SCALE} after)",
        ) from None


class _OutOfRange:
    """A number jsonb would refuse: orjson cannot write it, so `_exact_metadata_json` refuses it."""


def _numeric(text: str) -> orjson.Fragment | _OutOfRange:
    """A JSON number kept as its text."""
    return orjson.Fragment(text) if _fits_numeric(text) else _OutOfRange()


def _fits_numeric(text: str) -> bool:
    """Whether PostgreSQL's numeric input accepts this JSON number (the rules of its `numeric_in`)."""
    match = _JSON_NUMBER.fullmatch(text)
    if match is None:
        return False
    integer, fraction, sign, exponent_digits = match.groups()
    fraction = fraction or ""
    exponent_digits = (exponent_digits or "").lstrip("0")
    if len(exponent_digits) > len(str(NUMERIC_MAX_EXPONENT)):
        return False
    exponent = int(exponent_digits or 0) * (-1 if sign == "-" else 1)
    if abs(exponent) >= NUMERIC_MAX_EXPONENT:
        return False
    if len(fraction) - exponent > NUMERIC_MAX_SCALE:
        return False
    digits = integer + fraction
    significant = digits.lstrip("0")
    if not significant:
        return True
    weight = len(integer) - 1 - (len(digits) - len(significant)) + exponent
    return weight <= NUMERIC_MAX_WEIGHT


def _validate(model: type[BaseModel], value: dict[str, Any], prefix: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise EventRejected(Reason.INVALID_EVENT, _describe(exc, prefix)) from None


def _describe(exc: ValidationError, prefix: str) -> str:
    """Field paths and rules only: pydantic's own text would echo the input."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        location = prefix + ".".join(str(part) for part in error["loc"]) if error["loc"] else prefix.rstrip(".")
        parts.append(f"{location or 'body'}: {_rule(error)}")
    return _truncate("; ".join(parts))


def _rule(error: Any) -> str:
    """The rule a pydantic error states, without anything taken from the input."""
    if error["type"] == "value_error" or set(error.get("ctx", ())) <= RULE_CONTEXT:
        return error["msg"]  # this module's validators, or a message made of the rule's parameters
    return PARSER_RULES.get(error["type"], f"Input is not valid ({error['type']})")


def _check_fields(fields: dict[str, Any], prefix: str, known: Container[str]) -> None:
    """No NUL character or lone surrogate in these fields, each named by its contract name only."""
    for name, value in fields.items():
        if name in known:
            where = f"{prefix}{name}"
        elif _is_clean(name):
            where = f"{prefix.rstrip('.')}: a field outside the contract"
        else:
            raise EventRejected(Reason.INVALID_EVENT, f"{prefix.rstrip('.')}: a field name {_FOULED}")
        for problem in _string_problems(value, depth_limit=None):
            raise EventRejected(Reason.INVALID_EVENT, f"{where} {problem}")


def _check_metadata(metadata: Any) -> bool:
    """Refuse a bad string or too deep a nesting in `data.metadata`; return whether it holds
    a number only the body's text keeps exactly (a float, an integer past 64 bits)."""
    if not isinstance(metadata, dict | list):
        return False
    inexact: list[bool] = []
    for problem in _string_problems(metadata, depth_limit=MAX_METADATA_DEPTH, inexact=inexact):
        raise EventRejected(Reason.INVALID_EVENT, f"data.metadata {problem}")
    return bool(inexact)


_FOULED = "contains a NUL character or a lone surrogate"


def _string_problems(root: Any, depth_limit: int | None, inexact: list[bool] | None = None) -> Iterator[str]:
    """What is wrong below `root`, worded without any of its keys or values.

    With `inexact`, notes there a number that a float or a 64-bit integer does not keep exactly.
    """
    # Iterative walk: a hostile document must not exhaust the interpreter's stack.
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                yield "contains a NUL character"
            elif _has_lone_surrogate(value):
                yield "contains a lone surrogate"
        elif isinstance(value, dict):
            if depth_limit is not None and depth > depth_limit:
                yield f"is nested deeper than {depth_limit} levels"
                return
            for key, item in value.items():
                if not _is_clean(key):
                    yield f"has a key that {_FOULED}"
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth_limit is not None and depth > depth_limit:
                yield f"is nested deeper than {depth_limit} levels"
                return
            stack.extend((item, depth + 1) for item in value)
        elif inexact is not None and not inexact and _is_inexact(value):
            inexact.append(True)


def _is_inexact(value: Any) -> bool:
    if isinstance(value, float):
        return True
    return type(value) is int and not -(2**63) <= value < 2**64


def _is_clean(text: str) -> bool:
    return "\x00" not in text and not _has_lone_surrogate(text)


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _truncate(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
