"""Builders: what they build is what the worker accepts; bad values are refused by field name."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from worker.contract.decoding import Limits, decode_event
from worker.producer import InvalidEvent, message_created, project_uuid, usage_recorded
from worker.producer.events import cost_text
from worker.producer.identity import EXTERNAL_ID_NAMESPACE, derived_uuid
from worker.service.event_types import EVENT_TYPES

USER, CONVERSATION, MESSAGE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def decoded(event):
    return decode_event(event.body, "application/cloudevents+json", datetime.now(UTC), Limits(), EVENT_TYPES)


def test_a_built_message_is_decoded_by_the_worker_as_built() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    event = message_created(
        source="gw", message_id=MESSAGE, conversation_id=CONVERSATION, user_id=USER, role="assistant",
        content="héllo", model="m", prompt_tokens=3, completion_tokens=4, metadata={"n": 1}, created_at=at,
        conversation_title="t",
    )
    assert event.id == str(MESSAGE) and event.type == "message.created"
    got = decoded(event)
    assert (got.id, got.source, got.type) == (str(MESSAGE), "gw", "message.created")
    data = got.data
    assert (data.message_id, data.conversation_id, data.user_id) == (MESSAGE, CONVERSATION, USER)
    assert (data.role, data.content, data.model, data.prompt_tokens, data.completion_tokens) == ("assistant", "héllo", "m", 3, 4)
    assert data.created_at == at and data.metadata == {"n": 1} and data.conversation_title == "t"


def test_a_built_usage_event_is_decoded_by_the_worker_as_built() -> None:
    event = usage_recorded(
        source="gw", event_id="u-1", user_id=USER, model="m", prompt_tokens=10, completion_tokens=20,
        conversation_id=CONVERSATION, message_id=MESSAGE, request_id="r", cost_usd=Decimal("0.000123"),
    )
    got = decoded(event)
    assert got.id == "u-1" and got.type == "usage.recorded"
    assert (got.data.user_id, got.data.prompt_tokens, got.data.completion_tokens) == (USER, 10, 20)
    assert (got.data.conversation_id, got.data.message_id, got.data.request_id) == (CONVERSATION, MESSAGE, "r")
    assert orjson.loads(event.body)["data"]["cost_usd"] == "0.000123"


def test_cost_is_left_out_when_not_given() -> None:
    event = usage_recorded(source="gw", event_id="u", user_id=USER, model="m")
    assert "cost_usd" not in orjson.loads(event.body)["data"]


@pytest.mark.parametrize(
    ("cost", "text"),
    [
        (Decimal("0"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("1.35E-5"), "0.0000135"),
        (Decimal("12.500"), "12.5"),
        (Decimal("100"), "100"),
        (Decimal("0.000000000001"), "0.000000000001"),
        (Decimal("0.0000000000015"), "0.000000000002"),  # 13 digits: rounded half-even to 12
        (Decimal("0.0000000000004"), "0"),
    ],
)
def test_cost_is_a_decimal_string_with_at_most_12_fraction_digits(cost: Decimal, text: str) -> None:
    assert cost_text(cost) == text


@pytest.mark.parametrize("cost", [Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity"), 0.5])
def test_a_negative_or_non_finite_cost_is_refused(cost) -> None:
    with pytest.raises(InvalidEvent, match="cost_usd"):
        usage_recorded(source="gw", event_id="u", user_id=USER, model="m", cost_usd=cost)


def test_a_value_the_contract_refuses_names_the_field_and_not_the_value() -> None:
    with pytest.raises(InvalidEvent) as refused:
        message_created(
            source="gw", message_id=MESSAGE, conversation_id=CONVERSATION, user_id=USER, role="narrator",
            content="secret words",
        )
    assert "data.role" in str(refused.value) and "secret" not in str(refused.value)
    with pytest.raises(InvalidEvent, match="data.prompt_tokens"):
        usage_recorded(source="gw", event_id="u", user_id=USER, model="m", prompt_tokens=-1)
    with pytest.raises(InvalidEvent, match="created_at"):
        message_created(
            source="gw", message_id=MESSAGE, conversation_id=CONVERSATION, user_id=USER, role="user", content="",
            created_at=datetime(2025, 1, 1),
        )
    with pytest.raises(InvalidEvent, match="source"):
        usage_recorded(source="", event_id="u", user_id=USER, model="m")


def test_a_uuid_is_its_own_project_id_and_anything_else_goes_through_uuid5() -> None:
    known = uuid.uuid4()
    assert project_uuid(str(known)) == known
    assert project_uuid(str(known).upper()) == known
    assert project_uuid("alice@example.com") == uuid.uuid5(EXTERNAL_ID_NAMESPACE, "alice@example.com")
    assert project_uuid("alice") != project_uuid("Alice")
    assert str(EXTERNAL_ID_NAMESPACE) == "d8deec7b-1a2d-58a1-8dc0-1fdee312341c"
    assert EXTERNAL_ID_NAMESPACE == uuid.uuid5(uuid.NAMESPACE_URL, "urn:llm-persistence-worker:external-id")
    with pytest.raises(ValueError):
        project_uuid("")


def test_derived_ids_are_stable_and_distinct_per_part() -> None:
    assert derived_uuid("litellm", "c1", "usage") == derived_uuid("litellm", "c1", "usage")
    assert len({derived_uuid("litellm", "c1", part) for part in ("request", "response", "usage")}) == 3
    assert derived_uuid("a", "bc") != derived_uuid("ab", "c")
