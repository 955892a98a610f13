"""Pydantic models of the CloudEvents envelope and the two event payloads.

Strict where money is involved: integers must be JSON integers within bounds (`"5"`,
`5.0` and `true` are refused), UUIDs and RFC 3339 timestamps must be strings that parse,
and unknown extra fields are ignored (tolerant reader). A timestamp must also name an
instant the database driver carries as sent: one within the years 1 to 9999 once in UTC,
other than the first and the last microsecond of that range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

MAX_TOKENS = 2**31 - 1

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _require_str(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a JSON string")
    return value


def _require_rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp with a UTC offset")
    return value


# asyncpg sends an instant in UTC (`0001-01-01T00:00:00+01:00` parses, but is year 0 there),
# and sends these two instants as PostgreSQL's -infinity and infinity.
_FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
_LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def _require_storable_instant(value: datetime) -> datetime:
    # Comparing aware datetimes subtracts their offsets without building a datetime in UTC:
    # no OverflowError at the ends of the range.
    if not _FIRST_INSTANT < value < _LAST_INSTANT:
        raise ValueError("must lie strictly between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z")
    return value


def _require_json_media_type(value: str) -> str:
    if value.split(";", 1)[0].strip().lower() != "application/json":
        raise ValueError("must be application/json when present")
    return value


# Costs are exact decimals: NUMERIC(30, 12) in the database.
COST_FRACTION_DIGITS = 12
COST_INTEGER_DIGITS = 18
_DECIMAL_STRING = re.compile(r"\d+(\.\d+)?")
COST_RULE = (
    f"must be a non-negative decimal (a JSON number or a decimal string) with at most "
    f"{COST_FRACTION_DIGITS} digits after the point and {COST_INTEGER_DIGITS} before it"
)


def _to_cost(value: Any) -> Decimal:
    """A cost from a JSON number or a decimal string, exact; a float is read from its shortest
    repr here, and from the body's own digits by the decoder (`worker.contract.decoding`)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(COST_RULE)
    if isinstance(value, str) and not _DECIMAL_STRING.fullmatch(value):
        raise ValueError(COST_RULE)
    try:
        cost = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(COST_RULE) from None
    return check_cost(cost)


def check_cost(cost: Decimal) -> Decimal:
    """The cost itself when it is finite, non-negative and fits NUMERIC(30, 12) exactly."""
    if not cost.is_finite() or cost < 0 or (cost and cost.adjusted() >= COST_INTEGER_DIGITS):
        raise ValueError(COST_RULE)
    # Counted on the digits, not through a context: exact whatever their number.
    _, digits, exponent = cost.as_tuple()
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if cost and -int(exponent) - trailing_zeros > COST_FRACTION_DIGITS:
        raise ValueError(COST_RULE)
    return cost


TokenCount = Annotated[int, Field(strict=True, ge=0, le=MAX_TOKENS)]
Cost = Annotated[Decimal, BeforeValidator(_to_cost)]
UUIDString = Annotated[UUID, BeforeValidator(_require_str)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_require_rfc3339), AfterValidator(_require_storable_instant)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=255)]
ModelName = Annotated[StrictStr, Field(max_length=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Envelope(_Strict):
    """CloudEvents 1.0 structured-mode envelope; `data` is validated per type afterwards."""

    specversion: Literal["1.0"]
    id: Name
    source: Name
    type: StrictStr
    time: Timestamp | None = None
    datacontenttype: Annotated[StrictStr, AfterValidator(_require_json_media_type)] | None = None
    data: dict[str, Any]


class MessageCreatedData(_Strict):
    """`message.created`: a chat message with its token counts."""

    message_id: UUIDString
    conversation_id: UUIDString
    user_id: UUIDString
    role: Literal["system", "user", "assistant", "tool"]
    content: StrictStr
    model: ModelName | None = None
    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    metadata: dict[str, Any] | None = None
    created_at: Timestamp | None = None
    conversation_title: Annotated[StrictStr, Field(max_length=255)] | None = None
    cost_usd: Cost | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageRecordedData(_Strict):
    """`usage.recorded`: tokens consumed outside (or besides) a stored message."""

    user_id: UUIDString
    model: ModelName
    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    conversation_id: UUIDString | None = None
    message_id: UUIDString | None = None
    api_key_id: UUIDString | None = None
    request_id: Annotated[StrictStr, Field(max_length=255)] | None = None
    cost_usd: Cost | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded, validated event: what a handler receives.

    A plain dataclass: its fields come from validated models, so building it checks nothing
    again (a pydantic model here cost 1.6 µs an event for a second validation).
    """

    id: str
    source: str
    type: str
    time: datetime
    """The envelope `time`, or the receive time when the gateway sent none."""
    data: Any
    """The validated `data`: an instance of its type's data model (`worker.contract.types`)."""
    published_at: datetime | None = None
    """The envelope `time` as sent (None when absent): the start of publish-to-commit latency."""
    metadata_json: str | None = None
    """`data.metadata` of a message event as JSON text, each number in the digits it was sent with."""
