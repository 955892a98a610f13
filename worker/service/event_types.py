"""The event types this worker handles: one line each (name and routing key, data model, handler).

Adding a type: its data model in `worker.contract.events`, its handler in
`worker.service.handlers`, and one `EventType` line here. Decoding, the handler lookup, the
queue's bindings and the dead-letter tools all read this registry.
"""

from __future__ import annotations

from worker.contract.events import MessageCreatedData, UsageRecordedData
from worker.contract.names import MESSAGE_CREATED, USAGE_RECORDED
from worker.contract.types import EventType, EventTypes
from worker.service.handlers import Handler, MessageCreatedHandler, UsageRecordedHandler

EVENT_TYPES: EventTypes[Handler] = EventTypes(
    EventType(MESSAGE_CREATED, MessageCreatedData, MessageCreatedHandler()),
    EventType(USAGE_RECORDED, UsageRecordedData, UsageRecordedHandler()),
)
