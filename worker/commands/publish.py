"""`worker publish FILE|-`: the reference producer, through the producer library (`worker.producer`).

Input: one JSON event, a JSON array of events, or one event per line (JSON Lines). A
single event or a line is published byte for byte; array elements are re-serialised.
The events go through a spool and are published persistent, `mandatory`, with publisher
confirms. Without `--spool` the spool is a temporary file: what the broker did not confirm
is reported (exit 1) and the input is the copy to publish again. With `--spool PATH` the
unconfirmed events stay in that file and the next run with it publishes them first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson

from worker.producer import OutgoingEvent, Producer
from worker.settings import Settings


def read_events(raw: bytes) -> Iterator[tuple[bytes, dict]]:
    """Yield (body, parsed event) pairs from a file's bytes."""
    stripped = raw.strip()
    try:
        document = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        yield stripped, document
        return
    if isinstance(document, list):
        for item in document:
            yield orjson.dumps(item), item
        return
    for number, line in enumerate(stripped.splitlines(), start=1):
        if line.strip():
            try:
                yield line.strip(), orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"line {number} is not JSON") from exc


def outgoing_events(raw: bytes) -> list[OutgoingEvent]:
    """The input's events as they will be published; a `ValueError` names the first one that cannot be routed."""
    events = []
    for count, (body, event) in enumerate(read_events(raw), start=1):
        if not isinstance(event, dict):
            raise ValueError(f"event {count} is not a JSON object")
        routing_key = event.get("type")
        if not isinstance(routing_key, str) or not routing_key:
            raise ValueError(f"event {count} has no string 'type' to route by")
        events.append(OutgoingEvent(id=str(event.get("id", "")), type=routing_key, body=body))
    return events


def publish_events(settings: Settings, events: list[OutgoingEvent], spool: Path, timeout_s: float) -> None:
    """Publish through the spool at `spool`; `Unconfirmed` when the broker did not confirm them all."""
    producer = Producer(settings, spool_path=spool, connection_name="llm-persistence-worker-publish").start()
    try:
        producer.publish(events)
        result = producer.drain(timeout_s, stop_on_failure=True)
    finally:
        closed = producer.close()
    if not result.complete:
        reason = result.last_failure or f"no confirm within {timeout_s}s"
        raise Unconfirmed(closed.pending, reason)


class Unconfirmed(Exception):
    """Events the broker did not confirm (returned, nacked, unreachable, timed out)."""

    def __init__(self, pending: int, reason: str) -> None:
        super().__init__(f"{pending} event(s) not confirmed: {reason}")
        self.pending = pending


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("publish", help="publish JSON events to the exchange (reference producer)")
    parser.add_argument("file", help="a JSON event, a JSON array of events or JSON Lines; '-' for stdin")
    parser.add_argument(
        "--spool", type=Path, default=None,
        help="keep unconfirmed events in this spool file for the next run (default: a temporary spool)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None,
        help="seconds to wait for every confirm (default: WORKER_PUBLISH_TIMEOUT_S)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    source = args.file
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    timeout_s = args.timeout if args.timeout is not None else settings.publish_timeout_s
    try:
        events = outgoing_events(raw)
        if args.spool is not None:
            publish_events(settings, events, args.spool, timeout_s)
        else:
            with tempfile.TemporaryDirectory(prefix="worker-publish-") as directory:
                publish_events(settings, events, Path(directory) / "spool.sqlite3", timeout_s)
    except Unconfirmed as exc:
        kept = f"; kept in {args.spool}, published first by the next run" if args.spool is not None else ""
        print(f"error: {exc}{kept}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"published {len(events)} event(s)")
    return 0
