"""The producer library: builds contract events and publishes them without losing any.

Importable without the worker's database dependencies (import-linter checks it): a gateway
installs the package and uses `Producer`, the builders in `worker.producer.events` and the
id rule in `worker.producer.identity`.
"""

from worker.producer.events import InvalidEvent, OutgoingEvent, message_created, usage_recorded
from worker.producer.identity import EXTERNAL_ID_NAMESPACE, derived_uuid, project_uuid
from worker.producer.producer import Drained, Producer
from worker.producer.spool import Spool, SpoolFull, SpoolInUse

__all__ = [
    "EXTERNAL_ID_NAMESPACE",
    "Drained",
    "InvalidEvent",
    "OutgoingEvent",
    "Producer",
    "Spool",
    "SpoolFull",
    "SpoolInUse",
    "derived_uuid",
    "message_created",
    "project_uuid",
    "usage_recorded",
]
