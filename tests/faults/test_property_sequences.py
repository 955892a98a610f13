"""Fault 9: random sequences of duplicates, reorderings and redeliveries against a sequential model.

Hypothesis draws a few events, how often each is published, the order of all copies, and
which copies the broker hands out once and takes back (a redelivery) before the worker runs.
The model is the obvious sequential one: a dict of counters summed over distinct event ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import aio_pika
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tests.faults.scenario import assert_clean
from tests.support.db import create_users, rows
from tests.support.events import message_created, tokens_of, usage_recorded
from tests.support.publisher import EventLedger, RecordingPublisher
from worker.contract.names import WORKER_QUEUE
from worker.runtime.app import start_worker, stop_worker
from worker.testkit.ledger import LedgerChecker

EXAMPLES = 15

event_specs = st.lists(
    st.tuples(
        st.integers(0, 1),  # user
        st.sampled_from(["message", "usage-in-conversation", "usage"]),
        st.integers(0, 1),  # that user's conversation
        st.integers(0, 1000),  # prompt tokens
        st.integers(0, 500),  # completion tokens
    ),
    min_size=1,
    max_size=10,
)


@st.composite
def sequences(draw: st.DrawFn) -> dict[str, Any]:
    """Events, copies per event, an order of all copies, and how many copies get redelivered."""
    specs = draw(event_specs)
    copies = draw(st.lists(st.integers(1, 3), min_size=len(specs), max_size=len(specs)))
    order = draw(st.permutations([i for i, n in enumerate(copies) for _ in range(n)]))
    redeliver = draw(st.integers(0, len(order)))
    requeue_by_nack = draw(st.booleans())
    return {"specs": specs, "order": order, "redeliver": redeliver, "requeue_by_nack": requeue_by_nack}


def build_events(specs: list[tuple], users: list[uuid.UUID]) -> list[dict]:
    conversations = [[uuid.uuid4(), uuid.uuid4()] for _ in users]
    events = []
    for user, kind, conversation, prompt, completion in specs:
        owner, conv = users[user], conversations[user][conversation]
        if kind == "message":
            events.append(message_created(owner, conversation_id=conv, prompt_tokens=prompt,
                                          completion_tokens=completion))
        elif kind == "usage-in-conversation":
            events.append(usage_recorded(owner, conversation_id=conv, prompt_tokens=prompt,
                                         completion_tokens=completion))
        else:
            events.append(usage_recorded(owner, prompt_tokens=prompt, completion_tokens=completion))
    return events


def sequential_model(published: list[dict]) -> tuple[Counter[str], Counter[str]]:
    """Apply the copies one after another: the first copy of an id counts, later ones do nothing."""
    seen: set[str] = set()
    users: Counter[str] = Counter()
    conversations: Counter[str] = Counter()
    for event in published:
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        users[event["data"]["user_id"]] += tokens_of(event)
        if event["data"].get("conversation_id"):
            conversations[event["data"]["conversation_id"]] += tokens_of(event)
    return users, conversations


async def redeliver(amqp_url: str, count: int, by_nack: bool) -> int:
    """Take `count` deliveries and hand them back unacknowledged: the broker redelivers them."""
    connection = await aio_pika.connect(amqp_url)
    taken = 0
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(WORKER_QUEUE, passive=True)
        held = []
        for _ in range(count):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(message)
        taken = len(held)
        if by_nack:
            for message in held:
                await message.nack(requeue=True)
    finally:
        # Closing the channel returns whatever is still unacknowledged.
        await connection.close()
    return taken


async def test_random_duplicates_reorderings_and_redeliveries_match_the_sequential_model(
    db, database_url, amqp_url, new_scenario
) -> None:
    scenario = await new_scenario(db, database_url, amqp_url)
    worker_settings = scenario.settings
    loop = asyncio.get_running_loop()
    stats = Counter()

    async def run_example(example: dict[str, Any]) -> None:
        users = await create_users(db, 2)
        events = build_events(example["specs"], users)
        published = [events[i] for i in example["order"]]
        ledger = EventLedger()
        async with RecordingPublisher(amqp_url, ledger) as publisher:
            for event in published:
                scenario.ledger.add_event(event)
                await publisher.publish(event)
        redelivered = await redeliver(amqp_url, example["redeliver"], example["requeue_by_nack"])
        stats.update(examples=1, events=len(events), copies=len(published), redelivered=redelivered)
        checker = LedgerChecker(db, amqp_url, ledger, delays_s=scenario.delays)
        with capture_logs():  # the in-process worker's log would drown the figures
            worker = await start_worker(worker_settings)
            try:
                settled = await checker.wait_settled(timeout=60)
            finally:
                await stop_worker(worker, worker_settings)
        assert settled, "every copy was consumed and every event applied"
        for entry in ledger.entries.values():  # the shared scenario ledger records the confirms too
            scenario.ledger.entries[entry.key].confirmed += entry.confirmed
            scenario.ledger.entries[entry.key].published += entry.published
        want_users, want_conversations = sequential_model(published)
        got_users = {str(r["id"]): r["tokens_used"] for r in await rows(
            db, "SELECT id, tokens_used FROM users WHERE id = ANY(:ids)", ids=users)}
        got_conversations = {str(r["id"]): r["total_tokens"] for r in await rows(
            db, "SELECT id, total_tokens FROM conversations WHERE id = ANY(:ids)",
            ids=[uuid.UUID(c) for c in want_conversations])}
        assert got_users == {str(u): want_users[str(u)] for u in users}
        assert got_conversations == dict(want_conversations)
        inbox = await checker.inbox_counts([e["id"] for e in events])
        assert inbox == {e["id"]: 1 for e in events}

    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow])
    @given(sequences())
    def property_holds(example: dict[str, Any]) -> None:
        # Hypothesis drives from a thread; each example runs on the test's event loop.
        asyncio.run_coroutine_threadsafe(run_example(example), loop).result(timeout=120)

    await asyncio.to_thread(property_holds)
    scenario.fault(f"{stats['examples']} generated sequences: {stats['copies']} copies of {stats['events']} "
                   f"events, {stats['redelivered']} deliveries handed back for redelivery")
    report = await scenario.report()
    assert report.applied == stats["events"]
    assert_clean(report)
