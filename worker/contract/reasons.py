"""Dead-letter reason codes (`x-error-reason`), exactly as the contract spells them."""

from enum import StrEnum


class Reason(StrEnum):
    """Why an event was not applied."""

    INVALID_JSON = "invalid_json"
    INVALID_EVENT = "invalid_event"
    UNKNOWN_TYPE = "unknown_type"
    CONVERSATION_OWNER_MISMATCH = "conversation_owner_mismatch"
    UNKNOWN_USER = "unknown_user"
    RETRIES_EXHAUSTED = "retries_exhausted"
    DELIVERY_LIMIT = "delivery_limit"
