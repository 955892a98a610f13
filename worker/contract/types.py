"""The registry of event types: one declaration per type, from which decoding, handling and bindings derive.

A declaration names the CloudEvents `type` (also the routing key the worker queue is
bound to), the pydantic model of its `data`, and its handler. The contract layer does not
know what a handler is; the service layer declares the worker's types with theirs
(`worker.service.event_types.EVENT_TYPES`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, create_model

from worker.contract.events import Envelope

H = TypeVar("H")


@dataclass(frozen=True)
class EventType(Generic[H]):
    """One event type: its name and routing key, its data model, its handler."""

    name: str
    """The CloudEvents `type`; the gateway publishes it under the same routing key."""
    data_model: type[BaseModel]
    handler: H
    envelope_model: type[Envelope] = field(init=False, repr=False, compare=False)
    """Envelope and data in one model: both validated in one call on the common path."""

    def __post_init__(self) -> None:
        envelope = create_model(
            f"{self.data_model.__name__}Envelope", __base__=Envelope, data=(self.data_model, ...)
        )
        object.__setattr__(self, "envelope_model", envelope)

    @property
    def routing_key(self) -> str:
        return self.name


class EventTypes(Generic[H]):
    """The event types a worker knows, by name."""

    def __init__(self, *types: EventType[H]) -> None:
        self._by_name = {t.name: t for t in types}
        if len(self._by_name) != len(types):
            raise ValueError("two event types share a name")

    def get(self, name: object) -> EventType[H] | None:
        return self._by_name.get(name) if isinstance(name, str) else None

    def __iter__(self) -> Iterator[EventType[H]]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def routing_keys(self) -> tuple[str, ...]:
        return tuple(t.routing_key for t in self)

    def handler(self, name: str) -> H:
        return self._by_name[name].handler
