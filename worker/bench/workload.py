"""Synthetic gateway traffic: which events a run sends, recorded in a ledger for the checker."""

from __future__ import annotations

import random
import string
import uuid
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from worker.bench.options import BenchOptions
from worker.contract.names import MESSAGE_CREATED, USAGE_RECORDED
from worker.testkit.ledger import Ledger, Sent

SOURCE = "llm-gateway/bench"
MESSAGE_SHARE = 0.7
"""Share of `message.created`; the rest is `usage.recorded`, half of it tied to a conversation."""


class EventSpec(NamedTuple):
    """One event, compact: 100,000 of these must not weigh on the bench's own memory."""

    event_id: str
    type: str
    user_id: str
    conversation_id: str | None
    message_id: str | None
    prompt_tokens: int
    completion_tokens: int
    content_start: int
    content_length: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def sent(self) -> Sent:
        """The ledger's record of this event: the bench publishes every event confirmed, or fails the run."""
        return Sent(self.event_id, self.type, self.user_id, self.conversation_id, self.message_id, self.tokens,
                    published=1, confirmed=1)


class Workload:
    """Users, their conversations and a seeded stream of events over them.

    `uniform`: `users` users, each with `conversations_per_user` conversations.
    `hot`: one user owning as many conversations as the uniform workload has in all, so
    the only difference between the two is contention on one user row.
    """

    def __init__(
        self,
        name: str,
        users: int,
        conversations_per_user: int,
        content_bytes: int,
        seed: int,
        content_spread: float = 0.5,
        message_share: float = MESSAGE_SHARE,
    ) -> None:
        self.name = name
        self.rng = random.Random(f"{name}-{seed}")
        user_count = 1 if name == "hot" else users
        conversation_count = users * conversations_per_user
        self.user_ids = [str(self._uuid()) for _ in range(user_count)]
        self.conversations = [(self.user_ids[i % user_count], str(self._uuid())) for i in range(conversation_count)]
        self.content_bytes = max(1, content_bytes)
        self.content_spread = content_spread
        self.message_share = message_share
        # One long text to slice contents from: realistic sizes without a string per event.
        self.text = "".join(self.rng.choices(string.ascii_letters + string.digits + "     .,", k=4 * self.content_bytes + 4096))
        self.ledger = Ledger()
        """Every event of this workload, for the ledger checker."""

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def events(self, count: int, prefix: str) -> list[EventSpec]:
        """`count` new events with ids `<prefix><n>`; each is recorded in the ledger."""
        specs = []
        for n in range(count):
            spec = self._event(f"{prefix}{n}")
            self.ledger.add(spec.sent())
            specs.append(spec)
        return specs

    def _event(self, event_id: str) -> EventSpec:
        rng = self.rng
        user_id, conversation_id = self.conversations[rng.randrange(len(self.conversations))]
        prompt, completion = rng.randint(0, 5000), rng.randint(0, 2000)
        spread = int(self.content_bytes * self.content_spread)
        length = rng.randint(self.content_bytes - spread, self.content_bytes + spread) or 1
        start = rng.randrange(len(self.text) - length)
        if rng.random() < self.message_share:
            return EventSpec(event_id, MESSAGE_CREATED, user_id, conversation_id, str(self._uuid()),
                             prompt, completion, start, length)
        if rng.random() < 0.5:
            user_id, conversation_id = self.user_ids[rng.randrange(len(self.user_ids))], None
        return EventSpec(event_id, USAGE_RECORDED, user_id, conversation_id, None, prompt, completion, 0, 0)

    def body(self, spec: EventSpec, published_at: float) -> bytes:
        """The CloudEvent as the gateway sends it, its `time` set to the publish time (latency reference)."""
        if spec.type == MESSAGE_CREATED:
            data = {
                "message_id": spec.message_id,
                "conversation_id": spec.conversation_id,
                "user_id": spec.user_id,
                "role": "assistant",
                "content": self.text[spec.content_start:spec.content_start + spec.content_length],
                "model": "bench-model",
                "prompt_tokens": spec.prompt_tokens,
                "completion_tokens": spec.completion_tokens,
            }
        else:
            data = {
                "user_id": spec.user_id,
                "model": "bench-embed",
                "prompt_tokens": spec.prompt_tokens,
                "completion_tokens": spec.completion_tokens,
            }
            if spec.conversation_id is not None:
                data["conversation_id"] = spec.conversation_id
        return orjson.dumps({
            "specversion": "1.0",
            "id": spec.event_id,
            "source": SOURCE,
            "type": spec.type,
            "time": rfc3339(published_at),
            "datacontenttype": "application/json",
            "data": data,
        })


def rfc3339(epoch_s: float) -> str:
    """Microsecond RFC 3339 in UTC, the precision `processed_events.processed_at` has."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def workload_for(name: str, options: BenchOptions) -> Workload:
    """The workload `name` as a bench invocation's options shape it."""
    return Workload(name, options.users, options.conversations_per_user, options.content_bytes, options.seed,
                    options.content_spread, options.message_share)
