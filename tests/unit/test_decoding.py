"""Decoding and validation follow the contract's failure table, and never echo content."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import create_model

from tests.support.events import body, example, message_created, usage_recorded
from worker.contract.decoding import Limits, decode_event
from worker.contract.events import MessageCreatedData, UsageRecordedData
from worker.contract.reasons import Reason
from worker.contract.types import EventType, EventTypes
from worker.errors import EventRejected
from worker.service.event_types import EVENT_TYPES

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
LIMITS = Limits(max_body_bytes=64 * 1024, max_content_bytes=1024)
SECRET = "top-secret-user-text"


def decode(raw: bytes, content_type: str | None = "application/cloudevents+json", types: EventTypes = EVENT_TYPES):
    return decode_event(raw, content_type, NOW, LIMITS, types)


def _step_by_step_only(types: EventTypes) -> EventTypes:
    """The same types with a one-call model that never validates: decoding takes the step-by-step path."""
    never = create_model("Never", never=(int, ...))
    copies = []
    for event_type in types:
        copy = EventType(event_type.name, event_type.data_model, event_type.handler)
        object.__setattr__(copy, "envelope_model", never)
        copies.append(copy)
    return EventTypes(*copies)


def rejection(raw: bytes, content_type: str | None = "application/json") -> EventRejected:
    with pytest.raises(EventRejected) as caught:
        decode(raw, content_type)
    return caught.value


def with_data(**changes: object) -> bytes:
    event = message_created(uuid.uuid4(), content=SECRET)
    event["data"].update(changes)
    return body(event)


def test_contract_examples_decode_to_typed_events() -> None:
    message = decode(body(example("message.created")))
    usage = decode(body(example("usage.recorded")))
    assert isinstance(message.data, MessageCreatedData)
    assert message.data.total_tokens == 599
    assert message.data.metadata == {"finish_reason": "stop", "latency_ms": 1834, "tool_calls": []}
    assert isinstance(usage.data, UsageRecordedData)
    assert usage.data.api_key_id == uuid.UUID("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f")


def test_missing_time_defaults_to_the_receive_time() -> None:
    event = message_created(uuid.uuid4())
    del event["time"]
    assert decode(body(event)).time == NOW


def test_missing_or_json_content_type_is_accepted() -> None:
    raw = body(usage_recorded(uuid.uuid4()))
    assert decode(raw, None).type == "usage.recorded"
    assert decode(raw, "application/json; charset=utf-8").type == "usage.recorded"


def test_unknown_extra_fields_are_ignored() -> None:
    event = usage_recorded(uuid.uuid4(), future_field={"x": 1})
    event["extension"] = "value"
    assert decode(body(event)).data.prompt_tokens == 100


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        b"\xff\xfe{}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"[1, 2, 3]",
        b'"a string"',
        b"42",
        b"null",
        b'{"specversion": "1.0", "id": "\xed\xa0\x80"}',
    ],
    ids=["empty", "syntax", "invalid-utf8", "nan", "infinity", "array", "string", "number", "null", "encoded-surrogate"],
)
def test_bodies_that_are_not_a_json_object_are_invalid_json(raw: bytes) -> None:
    assert rejection(raw).reason is Reason.INVALID_JSON


@pytest.mark.parametrize(
    "changes",
    [
        {"prompt_tokens": "5"},
        {"prompt_tokens": True},
        {"prompt_tokens": 5.0},
        {"prompt_tokens": -1},
        {"completion_tokens": 2**31},
        {"completion_tokens": 10**40},
        {"prompt_tokens": None},
        {"user_id": "not-a-uuid"},
        {"user_id": 12345},
        {"role": "wizard"},
        {"created_at": "2026-11-28T07:00:00"},
        {"created_at": "1700000000"},
        {"created_at": 1700000000},
        {"model": "m" * 101},
        {"conversation_title": "t" * 256},
        {"content": None},
        {"metadata": [1, 2]},
    ],
)
def test_data_that_breaks_the_schema_is_an_invalid_event(changes: dict) -> None:
    error = rejection(with_data(**changes))
    assert error.reason is Reason.INVALID_EVENT
    assert SECRET not in error.detail


@pytest.mark.parametrize("field", ["message_id", "conversation_id", "user_id", "role", "content"])
def test_a_missing_required_field_is_named_in_the_detail(field: str) -> None:
    event = message_created(uuid.uuid4())
    del event["data"][field]
    error = rejection(body(event))
    assert error.reason is Reason.INVALID_EVENT
    assert f"data.{field}" in error.detail


@pytest.mark.parametrize(
    "changes",
    [
        {"specversion": "0.3"},
        {"specversion": 1.0},
        {"id": ""},
        {"id": "x" * 256},
        {"source": None},
        {"time": "yesterday"},
        {"data": "not an object"},
        {"datacontenttype": "text/plain"},
    ],
)
def test_envelope_that_breaks_the_schema_is_an_invalid_event(changes: dict) -> None:
    event = message_created(uuid.uuid4())
    event.update(changes)
    assert rejection(body(event)).reason is Reason.INVALID_EVENT


def test_an_unknown_type_is_refused_after_the_envelope_is_valid() -> None:
    event = message_created(uuid.uuid4())
    event["type"] = "message.deleted"
    assert rejection(body(event)).reason is Reason.UNKNOWN_TYPE
    del event["specversion"]
    assert rejection(body(event)).reason is Reason.INVALID_EVENT


def test_an_over_size_body_is_refused_before_parsing() -> None:
    error = rejection(b"{" + b" " * LIMITS.max_body_bytes + b"}")
    assert error.reason is Reason.INVALID_EVENT
    assert "limit" in error.detail


def test_over_size_content_is_an_invalid_event_without_echoing_it() -> None:
    error = rejection(with_data(content=SECRET * 100))
    assert error.reason is Reason.INVALID_EVENT
    assert "content" in error.detail and SECRET not in error.detail


def test_multibyte_content_is_measured_in_utf8_bytes() -> None:
    assert decode(with_data(content="é" * 512)).data.content == "é" * 512
    assert rejection(with_data(content="é" * 513)).reason is Reason.INVALID_EVENT


@pytest.mark.parametrize(
    "changes",
    [
        {"content": "a\x00b"},
        {"metadata": {"note": "x\x00"}},
        {"metadata": {"a\x00": 1}},
        {"metadata": {"list": [["deep\x00"]]}},
        {"model": "gpt\x00"},
    ],
)
def test_nul_characters_anywhere_are_refused(changes: dict) -> None:
    error = rejection(with_data(**changes))
    assert error.reason is Reason.INVALID_EVENT
    assert "NUL" in error.detail


def test_lone_surrogates_are_an_invalid_event_not_invalid_json() -> None:
    raw = with_data().replace(b'"role"', b'"note":"\\ud800","role"')
    raw = raw.replace(b'"content":"' + SECRET.encode(), b'"content":"\\udc00' + SECRET.encode())
    assert rejection(raw).reason is Reason.INVALID_EVENT


def test_metadata_nesting_is_limited_to_64_levels() -> None:
    def nested(levels: int) -> dict:
        value: dict = {}
        for _ in range(levels - 1):
            value = {"k": value}
        return value

    assert decode(with_data(metadata=nested(64))).data.metadata is not None
    assert rejection(with_data(metadata=nested(65))).reason is Reason.INVALID_EVENT


def test_nesting_thousands_deep_is_an_invalid_event() -> None:
    deep = b'{"k":' * 5000 + b"1" + b"}" * 5000
    raw = with_data(metadata={}).replace(b'"metadata":{}', b'"metadata":' + deep)
    assert rejection(raw).reason is Reason.INVALID_EVENT


def test_validation_detail_never_quotes_the_offending_value() -> None:
    error = rejection(with_data(role=SECRET, prompt_tokens=SECRET))
    assert SECRET not in error.detail
    assert "data.role" in error.detail and "data.prompt_tokens" in error.detail


def test_timestamps_with_offsets_are_accepted() -> None:
    raw = with_data(created_at="2026-11-28T07:00:00.123456+02:00")
    assert decode(raw).data.created_at.utcoffset().total_seconds() == 7200


def test_usage_requires_a_model() -> None:
    event = usage_recorded(uuid.uuid4())
    del event["data"]["model"]
    assert rejection(orjson.dumps(event)).reason is Reason.INVALID_EVENT


_field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**40),
    st.text(max_size=12),
    st.sampled_from(["user", "assistant", "2026-11-28T07:00:00Z", "2026-11-28T07:00:00", str(uuid.uuid4())]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_envelope_fields = ["specversion", "id", "source", "type", "time", "datacontenttype", "data"]
_data_fields = ["message_id", "conversation_id", "user_id", "role", "content", "model", "prompt_tokens",
                "completion_tokens", "metadata", "created_at", "conversation_title", "api_key_id", "request_id"]


def _outcome(raw: bytes, types: EventTypes = EVENT_TYPES) -> object:
    try:
        return decode(raw, types=types)
    except EventRejected as rejected:
        return (rejected.reason, rejected.detail)


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from(["message.created", "usage.recorded"]),
    envelope_changes=st.dictionaries(st.sampled_from(_envelope_fields), _field_values, max_size=2),
    data_changes=st.dictionaries(st.sampled_from(_data_fields), _field_values, max_size=3),
    dropped=st.lists(st.sampled_from(_data_fields), max_size=2),
)
def test_the_one_step_validation_decides_as_the_step_by_step_one(
    base: str, envelope_changes: dict, data_changes: dict, dropped: list
) -> None:
    """Envelope and data validated in one call (the fast path) give the same event or the same refusal."""
    event = message_created(uuid.uuid4(), content="hello") if base == "message.created" else usage_recorded(uuid.uuid4())
    event["data"].update(data_changes)
    for name in dropped:
        event["data"].pop(name, None)
    event.update(envelope_changes)
    raw = body(event)
    assert _outcome(raw) == _outcome(raw, _step_by_step_only(EVENT_TYPES))


@pytest.mark.parametrize("field", ["time", "created_at"])
@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        # asyncpg would send these two as -infinity and infinity.
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999+00:00",
    ],
)
def test_a_timestamp_the_database_would_not_hold_as_sent_is_an_invalid_event(field: str, stamp: str) -> None:
    event = message_created(uuid.uuid4())
    (event if field == "time" else event["data"])[field] = stamp
    error = rejection(body(event))
    assert error.reason is Reason.INVALID_EVENT
    rule = "Value error, must lie strictly between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z"
    assert error.detail == f"{'time' if field == 'time' else 'data.created_at'}: {rule}"


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00.000001Z", "0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59.999998Z",
              "9999-12-31T23:59:59.999999+01:00"],
)
def test_the_instants_next_to_the_ends_of_the_range_are_accepted(stamp: str) -> None:
    assert decode(with_data(created_at=stamp)).data.created_at == datetime.fromisoformat(stamp)


def _with_metadata_text(text: bytes) -> bytes:
    return with_data(metadata={}).replace(b'"metadata":{}', b'"metadata":' + text)


EXACT_NUMBERS = [
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1" * 5000,
    b"1e400",
    b"-1E-400",
    b"0.1000000000000000055511151231257827",
    b"1.50",
    b"1E2",
    b"-0.0",
]


@pytest.mark.parametrize("number", EXACT_NUMBERS, ids=lambda n: n.decode()[:24])
def test_a_metadata_number_keeps_the_digits_it_was_sent_with(number: bytes) -> None:
    event = decode(_with_metadata_text(b'{"n":' + number + b',"list":[1,' + number + b']}'))
    assert event.metadata_json == '{"n":' + number.decode() + ',"list":[1,' + number.decode() + "]}"


def test_metadata_without_a_float_or_a_wide_integer_is_written_by_orjson() -> None:
    event = decode(with_data(metadata={"finish_reason": "stop", "latency_ms": 1834, "big": 2**64 - 1}))
    assert orjson.loads(event.metadata_json) == {"finish_reason": "stop", "latency_ms": 1834, "big": 2**64 - 1}
    assert decode(with_data(metadata=None)).metadata_json is None
    assert decode(body(usage_recorded(uuid.uuid4()))).metadata_json is None


@pytest.mark.parametrize(
    "number",
    [b"1e131072", b"-9e131072", b"1e-16384", b"1.5e-16383", b"0.000e-99999", b"1e99999999999", b"1" * 131073],
    ids=lambda n: n.decode()[:24],
)
def test_a_metadata_number_postgresql_cannot_hold_is_an_invalid_event(number: bytes) -> None:
    with pytest.raises(EventRejected) as caught:
        decode_event(_with_metadata_text(b'{"n":[' + number + b"]}"), None, NOW, Limits(), EVENT_TYPES)
    error = caught.value
    assert error.reason is Reason.INVALID_EVENT
    assert "data.metadata" in error.detail and number.decode()[:6] not in error.detail


def test_a_wide_number_outside_metadata_is_not_stored_so_not_refused() -> None:
    raw = with_data(metadata={"x": 1.5}).replace(b'"role"', b'"future_field":1e999999,"role"')
    assert decode(raw).metadata_json == '{"x":1.5}'


@pytest.mark.parametrize(
    ("changes", "leak"),
    [
        ({"user_id": "LEAKED-not-a-uuid"}, "L"),
        ({"user_id": "123e4567-e89b-12d3-a456-42661417400Q"}, "Q"),
        ({"conversation_id": "12345"}, "5"),
        ({"created_at": "2026-11-28T07:00:00+25:00"}, "25"),
        ({"metadata": {"LEAKED": "x\x00"}}, "LEAKED"),
        ({"LEAKED": "x\x00"}, "LEAKED"),
        ({"metadata": {"k": {"LEAKED\x00": 1}}}, "LEAKED"),
    ],
)
def test_a_detail_names_the_field_and_the_rule_never_a_part_of_the_value(changes: dict, leak: str) -> None:
    error = rejection(with_data(**changes))
    assert error.reason is Reason.INVALID_EVENT
    assert f"`{leak}`" not in error.detail and "LEAKED" not in error.detail and "found" not in error.detail
    assert error.detail.startswith("data")


def test_an_unknown_type_is_not_quoted_in_the_detail() -> None:
    event = message_created(uuid.uuid4())
    event["type"] = "LEAKED.type"
    error = rejection(body(event))
    assert error.reason is Reason.UNKNOWN_TYPE
    assert "LEAKED" not in error.detail and error.detail.startswith("type")
