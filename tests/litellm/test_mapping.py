"""What the callback makes of real LiteLLM calls (mocked responses, no broker): the mapping rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import litellm
import orjson
import pytest
from prometheus_client import REGISTRY

from tests.litellm.conftest import Capture
from worker.contract.decoding import Limits, decode_event
from worker.integrations.litellm import WorkerCallback, handler
from worker.integrations.litellm_mapping import NotRecorded, events_for_call
from worker.producer import derived_uuid, project_uuid
from worker.service.event_types import EVENT_TYPES


def decoded(event):
    return decode_event(event.body, "application/cloudevents+json", datetime.now(UTC), Limits(), EVENT_TYPES)


async def one_call(router, capture: Capture, **request):
    seen = len(capture.successes)
    request.setdefault("messages", [{"role": "user", "content": "hi there"}])
    response = await router.acompletion(model="gpt-test", **request)
    if request.get("stream"):
        async for _ in response:
            pass
    await capture.settled(seen + 1)
    return capture.successes[seen]


def events_of(call):
    return events_for_call(call.kwargs, call.response, call.start_time, call.end_time, source="litellm-test")


async def test_a_call_gives_its_prompt_its_reply_and_one_usage_event(router, capture) -> None:
    call = await one_call(
        router, capture, mock_response="Hello, Ada.", user="ada", metadata={"conversation_id": "conv-1"},
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "old"},
                  {"role": "assistant", "content": "old reply"}, {"role": "user", "content": "hi there"}],
    )
    prompt, reply, usage = (decoded(event) for event in events_of(call))
    call_id = call.kwargs["litellm_call_id"]
    assert [e.type for e in (prompt, reply, usage)] == ["message.created", "message.created", "usage.recorded"]
    assert (prompt.data.role, prompt.data.content) == ("user", "hi there")
    assert (reply.data.role, reply.data.content) == ("assistant", "Hello, Ada.")
    for message in (prompt, reply):
        assert message.data.user_id == project_uuid("ada") and message.data.conversation_id == project_uuid("conv-1")
        assert message.data.prompt_tokens == message.data.completion_tokens == 0
        assert message.data.model == "openai/gpt-4o-mini"
    assert prompt.data.created_at < reply.data.created_at
    logged = call.kwargs["standard_logging_object"]
    assert (usage.data.prompt_tokens, usage.data.completion_tokens) == (logged["prompt_tokens"], logged["completion_tokens"])
    assert usage.data.prompt_tokens + usage.data.completion_tokens > 0
    assert (usage.data.user_id, usage.data.conversation_id, usage.data.message_id) == (
        project_uuid("ada"), project_uuid("conv-1"), reply.data.message_id
    )
    assert usage.id == str(derived_uuid("litellm", call_id, "usage"))
    assert reply.data.message_id == derived_uuid("litellm", call_id, "response")
    assert reply.data.metadata["prompt_tokens"] == logged["prompt_tokens"]
    cost = orjson.loads(events_of(call)[2].body)["data"]["cost_usd"]
    assert Decimal(cost) == Decimal(str(call.kwargs["response_cost"])) > 0


async def test_the_same_call_always_gives_the_same_events(router, capture) -> None:
    call = await one_call(router, capture, mock_response="x", user="ada")
    assert [e.body for e in events_of(call)] == [e.body for e in events_of(call)]


async def test_the_proxy_keys_user_comes_before_the_end_user_and_the_request_user(router, capture) -> None:
    call = await one_call(router, capture, mock_response="x", user="end-user", metadata={"user_api_key_user_id": "key-user"})
    assert {decoded(e).data.user_id for e in events_of(call)} == {project_uuid("key-user")}
    known = uuid.uuid4()
    call = await one_call(router, capture, mock_response="x", user=str(known))
    assert {decoded(e).data.user_id for e in events_of(call)} == {known}


async def test_without_a_conversation_id_a_call_is_a_conversation_of_its_own(router, capture) -> None:
    call = await one_call(router, capture, mock_response="x", user="ada")
    expected = derived_uuid("litellm", call.kwargs["litellm_call_id"], "conversation")
    assert {decoded(e).data.conversation_id for e in events_of(call)} == {expected}


async def test_a_streamed_call_is_recorded_once_with_its_combined_usage_and_text(router, capture) -> None:
    call = await one_call(router, capture, mock_response="one two three four", stream=True, user="ada")
    prompt, reply, usage = (decoded(event) for event in events_of(call))
    assert reply.data.content == "one two three four"
    assert usage.data.completion_tokens == call.kwargs["standard_logging_object"]["completion_tokens"] > 0


async def test_an_exact_usage_mock_is_recorded_as_reported(router, capture) -> None:
    mocked = litellm.ModelResponse(
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "exact"}}],
        usage=litellm.Usage(prompt_tokens=1234, completion_tokens=567, total_tokens=1801),
    )
    call = await one_call(router, capture, mock_response=mocked, user="ada")
    usage = decoded(events_of(call)[2])
    assert (usage.data.prompt_tokens, usage.data.completion_tokens) == (1234, 567)


async def test_multi_part_content_keeps_its_text_parts(router, capture) -> None:
    content = [{"type": "text", "text": "look at"}, {"type": "image_url", "image_url": {"url": "data:,"}},
               {"type": "text", "text": "this"}]
    call = await one_call(router, capture, mock_response="ok", user="ada", messages=[{"role": "user", "content": content}])
    assert decoded(events_of(call)[0]).data.content == "look at\nthis"


async def test_a_call_without_a_user_is_not_recorded_and_the_hook_does_not_raise(router, capture) -> None:
    call = await one_call(router, capture, mock_response="x")
    with pytest.raises(NotRecorded, match="names no user"):
        events_of(call)
    before = REGISTRY.get_sample_value("worker_litellm_calls_not_recorded_total", {"reason": "unmapped"}) or 0
    callback = WorkerCallback(settings=None, producer=None)
    await callback.async_log_success_event(call.kwargs, call.response, call.start_time, call.end_time)
    callback.log_success_event({"nonsense": object()}, None, None, None)
    after = REGISTRY.get_sample_value("worker_litellm_calls_not_recorded_total", {"reason": "unmapped"})
    assert after == before + 2
    assert callback._producer is None  # nothing to publish: no spool, no connection


def test_the_ready_handler_is_a_custom_logger_that_connects_nothing_at_import() -> None:
    from litellm.integrations.custom_logger import CustomLogger

    assert isinstance(handler, CustomLogger) and isinstance(handler, WorkerCallback)
    assert handler._producer is None
