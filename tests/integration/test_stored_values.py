"""Values at the edges of what PostgreSQL holds: metadata numbers stored digit for digit, and
what the database would refuse dead-lettered at once, by the real worker into the real database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import text

from tests.support.amqp import Gateway
from tests.support.db import rows, scalar
from tests.support.events import body, message_created
from tests.support.services import ADMIN_DSN
from tests.support.waiting import eventually
from worker.contract.decoding import Limits, decode_event
from worker.errors import EventRejected
from worker.service.event_types import EVENT_TYPES

SENT_METADATA = (
    b'{"wide": 18446744073709551616, "below_int64": -9223372036854775809, "digits": ' + b"7" * 5000 + b","
    b' "huge": 1e400, "tiny": -1E-400, "precise": 0.1000000000000000055511151231257827, "scaled": 1.50,'
    b' "exponent": 1E2, "negative_zero": -0.0, "largest": 9e131071, "smallest": 1e-16383,'
    b' "nested": [{"again": 3.141592653589793238462643383279502884197}], "plain": 1834, "text": "stop"}'
)


async def test_metadata_numbers_are_stored_as_they_were_sent(db, worker, amqp_url, user_id) -> None:
    event = message_created(user_id, metadata={})
    raw = body(event).replace(b'"metadata":{}', b'"metadata":' + SENT_METADATA)
    async with Gateway(amqp_url) as gateway:
        await gateway.publish_raw(raw)
    message_id = uuid.UUID(event["data"]["message_id"])
    await eventually(lambda: _stored(db, message_id), timeout=20)
    [row] = await rows(
        db,
        "SELECT metadata = CAST(:sent AS jsonb) AS same, metadata::text AS text FROM messages WHERE id = :id",
        sent=SENT_METADATA.decode(),
        id=message_id,
    )
    assert row["same"], "jsonb differs from PostgreSQL's own reading of the metadata sent"
    assert _numbers(row["text"].encode()) == _numbers(SENT_METADATA)


async def test_the_instants_next_to_the_ends_of_the_range_are_stored_as_sent(db, worker, amqp_url, user_id) -> None:
    sent = {"0001-01-01T00:00:00.000001Z": "0001-01-01 00:00:00.000001+00",
            "9999-12-31T23:59:59.999998+00:00": "9999-12-31 23:59:59.999998+00"}
    events = [message_created(user_id, created_at=stamp) for stamp in sent]
    async with Gateway(amqp_url) as gateway:
        for event in events:
            await gateway.publish(event)
    ids = [uuid.UUID(event["data"]["message_id"]) for event in events]
    await eventually(lambda: _all_stored(db, ids), timeout=20)
    async with db.connect() as conn:
        await conn.exec_driver_sql("SET TIME ZONE 'UTC'")
        for event, expected in zip(events, sent.values(), strict=True):
            stored = await conn.scalar(
                text("SELECT created_at::text FROM messages WHERE id = :id"), {"id": uuid.UUID(event["data"]["message_id"])}
            )
            assert stored == expected


@pytest.mark.parametrize(
    "number",
    ["1e131071", "1e131072", "9.99e131071", "0.0001e131075", "1e-16383", "1e-16384", "1.5e-16383", "0e999999",
     "0e-999999", "0.000e-16380", "0.000e-16381", "123.456e-16380", "-0", "1" * 131072, "1" * 131073,
     "0." + "0" * 16383, "0." + "0" * 16384, "1e1073741822", "0e1073741823", "1e-1073741823"],
    ids=lambda n: n[:20],
)
async def test_the_numbers_metadata_refuses_are_the_numbers_jsonb_refuses(number: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.fetchval("SELECT CAST($1 AS jsonb)", f"[{number}]")
    except asyncpg.DataError:
        accepted = False
    else:
        accepted = True
    finally:
        await conn.close()
    assert _decoder_accepts(number) is accepted


def _decoder_accepts(number: str) -> bool:
    raw = body(message_created(uuid.uuid4(), metadata={})).replace(b'"metadata":{}', f'"metadata":{{"n":{number}}}'.encode())
    try:
        decode_event(raw, None, datetime.now(UTC), Limits(), EVENT_TYPES)
    except EventRejected:
        return False
    return True


def _numbers(text: bytes) -> object:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


async def _all_stored(db, ids: list[uuid.UUID]) -> bool:
    return await scalar(db, "SELECT count(*) FROM messages WHERE id = ANY(:ids)", ids=ids) == len(ids)


async def _stored(db, message_id: uuid.UUID) -> bool:
    return await scalar(db, "SELECT count(*) FROM messages WHERE id = :id", id=message_id) == 1
