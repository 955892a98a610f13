"""`worker dlq stats|peek|replay|discard`: operate the dead-letter queue (docs/DEAD_LETTERS.md).

Every command reads the queue the same way: basic.get with manual acknowledgement of
exactly as many messages as the queue held when the command started (the whole queue,
even for `peek -n 1`). What a command keeps stays unacknowledged on its channel until the
scan ends and is then returned in one `nack(multiple, requeue)`. A quorum queue puts
returned messages at its tail, so returning the whole queue at once, in delivery order,
leaves content and order as they were, and no run ever meets a message it put back.

Messages are read on the channel's aiormq layer and kept as the worker's own `Delivery`:
aio-pika's message object refuses some properties the wire allows (a delivery mode other
than 1 or 2), and a dead letter is exactly what other code could not handle.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import orjson
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp import commands as spec

from worker.broker.connection import amqp_url
from worker.broker.delivery import Delivery
from worker.broker.publisher import ConfirmedPublisher, PublishFailed, open_publisher_channel
from worker.broker.settlement import (
    BROKER_HISTORY_HEADERS,
    HEADER_DEAD_LETTERED_AT,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_RETRY_CYCLES,
    HEADER_RETRY_REASON,
    HEADER_RETRY_STEP,
    MAX_NOTES,
    copy_message,
)
from worker.contract.names import (
    DEAD_LETTER_QUEUE,
    HEADER_ATTEMPTS,
    HEADER_DEATH,
    HEADER_DELIVERY_COUNT,
    HEADER_DETAIL,
    HEADER_REASON,
    WORKER_QUEUE,
)
from worker.contract.reasons import Reason
from worker.service.event_types import EVENT_TYPES
from worker.settings import Settings

log = structlog.get_logger(__name__)

# Failure history of a dead-lettered copy: a replayed event starts afresh without it.
REPLAY_DROPPED_HEADERS = frozenset(
    {
        HEADER_REASON,
        HEADER_DETAIL,
        HEADER_ATTEMPTS,
        HEADER_DEATH,
        HEADER_RETRY_REASON,
        HEADER_RETRY_STEP,
        HEADER_RETRY_CYCLES,
        HEADER_ORIGINAL_ROUTING_KEY,
        HEADER_DELIVERY_COUNT,
        HEADER_DEAD_LETTERED_AT,
        *BROKER_HISTORY_HEADERS,
    }
)
UNKNOWN_REASON = "unknown"
MAX_ID_CHARS = 200
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# --- reading one dead letter --------------------------------------------------------------


def reason_of(message: Delivery) -> str:
    """`x-error-reason`; `delivery_limit` for what the broker dead-lettered itself (only `x-death`)."""
    headers = message.headers or {}
    reason = _text(headers.get(HEADER_REASON))
    if reason:
        return reason
    return str(Reason.DELIVERY_LIMIT) if headers.get(HEADER_DEATH) else UNKNOWN_REASON


def routing_key_of(message: Delivery) -> str | None:
    """The gateway's routing key: our header, else the broker's first death record, else the body's `type`."""
    headers = message.headers or {}
    original = _text(headers.get(HEADER_ORIGINAL_ROUTING_KEY))
    if original:
        return original
    for death in _deaths(headers):
        keys = death.get("routing-keys") or []
        if keys and _text(keys[0]):
            return _text(keys[0])
    event_type = _parsed_body(message).get("type")
    return event_type if isinstance(event_type, str) and event_type else None


def event_id_of(message: Delivery) -> str | None:
    """The event's id (AMQP `message_id`, else the body's `id`); never any other part of the body."""
    candidate = message.message_id or _parsed_body(message).get("id")
    return candidate[:MAX_ID_CHARS] if isinstance(candidate, str) and candidate else None


def dead_since(message: Delivery) -> datetime | None:
    """When the event was dead-lettered (by the worker's stamp or the broker's `x-death`), else
    when it was published (`timestamp`)."""
    headers = message.headers or {}
    stamped = headers.get(HEADER_DEAD_LETTERED_AT)
    if isinstance(stamped, datetime):
        return _aware(stamped)
    for death in _deaths(headers):
        if isinstance(death.get("time"), datetime):
            return _aware(death["time"])
    if isinstance(message.timestamp, datetime):
        return _aware(message.timestamp)
    return None


def replay_copy(message: Delivery, routing_key: str) -> tuple[aio_pika.Message, list[str]]:
    """Body and properties as they are, without the headers that record the failure, with the
    gateway's routing key (the copy goes to the worker queue by name); and notes of what had to
    change so that the copy can be encoded."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in REPLAY_DROPPED_HEADERS}
    headers[HEADER_ORIGINAL_ROUTING_KEY] = routing_key
    return copy_message(message, headers)


def parse_duration(value: str) -> timedelta:
    """`7d`, `12h`, `30m`, `45s`, `2w` → a timedelta (argparse type)."""
    match = _DURATION.match(value)
    if not match:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration like 7d, 12h, 30m")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _deaths(headers: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    deaths = headers.get(HEADER_DEATH)
    return [d for d in deaths if isinstance(d, Mapping)] if isinstance(deaths, list | tuple) else []


def _parsed_body(message: Delivery) -> dict[str, Any]:
    try:
        parsed = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def _aware(moment: datetime) -> datetime:
    # AMQP timestamps carry no zone; they are seconds since the epoch, i.e. UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- scanning the queue -------------------------------------------------------------------


class DeadLetterQueueMissing(Exception):
    """The vhost has no dead-letter queue (no worker ever started there)."""


class DeadLetterQueue:
    """A bounded scan of the dead-letter queue; kept messages go back, in order, when it ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.depth = 0
        self._kept: Delivery | None = None
        self.kept = 0

    async def __aenter__(self) -> DeadLetterQueue:
        # Not a robust connection: after a reconnect, delivery tags of the old channel mean nothing.
        url = amqp_url(self.settings, "llm-persistence-worker-dlq")
        self.connection: AbstractConnection = await aio_pika.connect(url)
        try:
            self.channel: AbstractChannel = await self.connection.channel()
            queue = await self.channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
            self.depth = queue.declaration_result.message_count or 0
            self.raw = await self.channel.get_underlay_channel()
        except aio_pika.exceptions.ChannelNotFoundEntity as exc:
            await self.connection.close()
            raise DeadLetterQueueMissing(f"queue {DEAD_LETTER_QUEUE!r} does not exist in this vhost") from exc
        except BaseException:
            await self.connection.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.return_kept()
        finally:
            await self.connection.close()

    async def scan(self) -> AsyncIterator[Delivery]:
        """The messages that were in the queue at the start, each once, head first.

        Callers take or keep every one: stopping early would return the first part behind
        the rest and change the order.
        """
        for _ in range(self.depth):
            message = await self.raw.basic_get(DEAD_LETTER_QUEUE, no_ack=False)
            if isinstance(message.delivery, spec.Basic.GetEmpty):
                return
            yield Delivery(message)

    def keep(self, message: Delivery) -> None:
        """Leave the message in the queue (returned when the scan ends, not now: see module doc)."""
        self._kept = message
        self.kept += 1

    async def remove(self, message: Delivery) -> None:
        await message.ack()

    async def return_kept(self) -> None:
        """Return every kept message in one go; the highest tag covers all unsettled ones below it."""
        kept, self._kept = self._kept, None
        if kept is not None and not self.raw.is_closed:
            await self.raw.basic_nack(kept.delivery_tag, multiple=True, requeue=True)


async def open_publisher(connection: AbstractConnection, settings: Settings) -> ConfirmedPublisher:
    return ConfirmedPublisher(await open_publisher_channel(connection), settings.publish_timeout_s)


# --- the commands -------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterView:
    """What `peek` shows of one message: metadata always, the body only on request."""

    event_id: str | None
    reason: str
    routing_key: str | None
    size: int
    headers: dict[str, Any]
    properties: dict[str, Any]
    body: bytes | None = None


async def stats(settings: Settings) -> Counter[str]:
    """Messages in the dead-letter queue, by reason."""
    counts: Counter[str] = Counter()
    async with DeadLetterQueue(settings) as dlq:
        async for message in dlq.scan():
            counts[reason_of(message)] += 1
            dlq.keep(message)
    return counts


async def peek(settings: Settings, count: int, *, show_body: bool = False) -> list[DeadLetterView]:
    """The first `count` messages, left in place."""
    views = []
    async with DeadLetterQueue(settings) as dlq:
        async for message in dlq.scan():
            dlq.keep(message)
            if len(views) >= count:
                continue
            views.append(
                DeadLetterView(
                    event_id=event_id_of(message),
                    reason=reason_of(message),
                    routing_key=routing_key_of(message),
                    size=len(message.body),
                    headers=dict(message.headers or {}),
                    properties=_properties(message),
                    body=message.body if show_body else None,
                )
            )
    return views


@dataclass
class ReplayReport:
    """Event ids by what happened to them."""

    replayed: list[str | None] = field(default_factory=list)
    would_replay: list[str | None] = field(default_factory=list)
    failed: list[tuple[str | None, str]] = field(default_factory=list)
    unroutable: list[str | None] = field(default_factory=list)
    kept: int = 0


async def replay(
    settings: Settings, *, reason: str | None = None, limit: int | None = None, dry_run: bool = False
) -> ReplayReport:
    """Republish selected dead letters to the worker queue; each leaves the queue only once confirmed."""
    report = ReplayReport()
    async with DeadLetterQueue(settings) as dlq:
        publisher = await open_publisher(dlq.connection, settings)
        stopped = False
        async for message in dlq.scan():
            chosen = len(report.replayed) + len(report.would_replay)
            if stopped or (limit is not None and chosen >= limit):
                dlq.keep(message)
                continue
            if reason is not None and reason_of(message) != reason:
                dlq.keep(message)
                continue
            event_id = event_id_of(message)
            routing_key = routing_key_of(message)
            if routing_key is None:
                report.unroutable.append(event_id)
                dlq.keep(message)
            elif routing_key not in EVENT_TYPES.routing_keys:
                # The exchange would not have routed it to the worker either.
                unbound = f"routing key {routing_key[:MAX_ID_CHARS]!r} is not bound to the worker queue"
                report.failed.append((event_id, unbound))
                dlq.keep(message)
            elif dry_run:
                report.would_replay.append(event_id)
                dlq.keep(message)
            else:
                try:
                    copy, notes = replay_copy(message, routing_key)
                    # Through the default exchange to the worker queue alone: other subscribers of
                    # the exchange got the event the first time; `mandatory` fails when the queue is absent.
                    await publisher.publish(copy, WORKER_QUEUE)
                except Exception as exc:  # noqa: BLE001 - reported, and the dead letter stays
                    failed = isinstance(exc, PublishFailed)
                    error = str(exc) if failed else f"could not republish ({type(exc).__name__})"
                    log.error("dead_letter_replay_failed", event_id=event_id, error=error)
                    report.failed.append((event_id, error))
                    dlq.keep(message)
                    # A lost channel fails every later publish too: keep the rest as it is.
                    stopped = publisher.channel.is_closed
                    continue
                # Acked only now: if this ack is lost, the message stays and a second replay is a duplicate
                # the worker's inbox ignores.
                await dlq.remove(message)
                report.replayed.append(event_id)
                changed = {"headers_changed": notes[:MAX_NOTES]} if notes else {}
                log.info("dead_letter_replayed", event_id=event_id, routing_key=routing_key, reason=reason_of(message),
                         **changed)
        report.kept = dlq.kept
    return report


@dataclass
class DiscardReport:
    """Event ids removed, and how many dead letters stayed."""

    discarded: list[str | None] = field(default_factory=list)
    kept_unknown_age: int = 0
    kept: int = 0


async def discard(settings: Settings, *, reason: str, older_than: timedelta | None = None) -> DiscardReport:
    """Remove dead letters of `reason` (only those older than `older_than`, when given)."""
    report = DiscardReport()
    now = datetime.now(UTC)
    async with DeadLetterQueue(settings) as dlq:
        async for message in dlq.scan():
            if reason_of(message) != reason:
                dlq.keep(message)
                continue
            since = dead_since(message)
            if older_than is not None and since is None:
                report.kept_unknown_age += 1
                dlq.keep(message)
                continue
            if older_than is not None and since is not None and now - since < older_than:
                dlq.keep(message)
                continue
            event_id = event_id_of(message)
            await dlq.remove(message)
            report.discarded.append(event_id)
            age_s = int((now - since).total_seconds()) if since else None
            log.info("dead_letter_discarded", event_id=event_id, reason=reason, age_s=age_s)
        report.kept = dlq.kept
    return report


def _properties(message: Delivery) -> dict[str, Any]:
    values = {
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "delivery_mode": int(message.delivery_mode) if message.delivery_mode else None,
        "message_id": message.message_id,
        "timestamp": message.timestamp,
        "type": message.type,
        "app_id": message.app_id,
        "correlation_id": message.correlation_id,
    }
    return {k: v for k, v in values.items() if v is not None}


# --- the command line ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    dlq = subparsers.add_parser("dlq", help="inspect, replay or discard dead-lettered events")
    commands = dlq.add_subparsers(dest="dlq_command", required=True)

    commands.add_parser("stats", help="count dead letters by reason").set_defaults(handler=run_stats)

    peek_parser = commands.add_parser("peek", help="show the first dead letters (headers, ids, sizes)")
    peek_parser.add_argument("-n", type=int, default=10, help="how many (default 10)")
    peek_parser.add_argument("--show-body", action="store_true", help="also print bodies: they hold user content")
    peek_parser.set_defaults(handler=run_peek)

    replay_parser = commands.add_parser("replay", help="republish dead letters to the worker queue")
    replay_parser.add_argument("--reason", default=None, help="only dead letters with this reason")
    replay_parser.add_argument("--limit", type=int, default=None, help="replay at most this many")
    replay_parser.add_argument("--dry-run", action="store_true", help="show what would be replayed; change nothing")
    replay_parser.set_defaults(handler=run_replay)

    discard_parser = commands.add_parser("discard", help="remove dead letters that will never be replayed")
    discard_parser.add_argument("--reason", required=True, help="only dead letters with this reason")
    discard_parser.add_argument(
        "--older-than", type=parse_duration, default=None, metavar="D", help="only older than D (7d, 12h, 30m)"
    )
    discard_parser.set_defaults(handler=run_discard)


Handler = Callable[[argparse.Namespace, Settings], int]


def _reports_broker_errors(handler: Handler) -> Handler:
    """Turn a missing queue or an unreachable broker into one line and exit code 1."""

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return handler(args, settings)
        except DeadLetterQueueMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
        except (aio_pika.exceptions.AMQPConnectionError, ConnectionError) as exc:
            print(f"error: broker unreachable ({type(exc).__name__})", file=sys.stderr)
        return 1

    return wrapper


@_reports_broker_errors
def run_stats(args: argparse.Namespace, settings: Settings) -> int:
    counts = asyncio.run(stats(settings))
    for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        print(f"{reason:<30} {count}")
    print(f"{'total':<30} {sum(counts.values())}")
    return 0


@_reports_broker_errors
def run_peek(args: argparse.Namespace, settings: Settings) -> int:
    views = asyncio.run(peek(settings, max(args.n, 0), show_body=args.show_body))
    for number, view in enumerate(views, start=1):
        print(f"#{number} event_id={view.event_id} reason={view.reason} routing_key={view.routing_key} size={view.size}B")
        for key, value in view.properties.items():
            print(f"    {key}: {_printable(value)}")
        for key, value in sorted(view.headers.items()):
            print(f"    header {key}: {_printable(value)}")
        if view.body is not None:
            print("    body: " + view.body.decode("utf-8", "replace"))
    if not views:
        print("the dead-letter queue is empty")
    return 0


@_reports_broker_errors
def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(replay(settings, reason=args.reason, limit=args.limit, dry_run=args.dry_run))
    for event_id in report.would_replay:
        print(f"would replay {event_id}")
    for event_id in report.replayed:
        print(f"replayed {event_id}")
    for event_id in report.unroutable:
        print(f"kept {event_id}: no routing key (no x-original-routing-key, x-death or type)", file=sys.stderr)
    for event_id, error in report.failed:
        print(f"kept {event_id}: {error}", file=sys.stderr)
    done = len(report.would_replay) if args.dry_run else len(report.replayed)
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {done}, failed {len(report.failed)}, unroutable {len(report.unroutable)}, left in queue {report.kept}")
    return 1 if report.failed or report.unroutable else 0


@_reports_broker_errors
def run_discard(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(discard(settings, reason=args.reason, older_than=args.older_than))
    print(
        f"discarded {len(report.discarded)}, kept {report.kept}"
        f" (of which {report.kept_unknown_age} of reason {args.reason!r} with unknown age)"
    )
    return 0


def _printable(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return _aware(value).isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_printable(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_printable(v)}" for k, v in value.items()) + "}"
    return str(value)
