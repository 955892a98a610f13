"""`BufferedFrameReceiver` yields exactly the frames aiormq's own receiver would, however the bytes arrive."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiormq.connection
import pamqp.frame
import pytest
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.exceptions import PAMQPException
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from worker.broker import frames
from worker.broker.frames import BufferedFrameReceiver, decode_frame

BODY = b'{"specversion":"1.0","id":"e-1"}' * 40


def _wire() -> tuple[bytes, list[tuple[int, int, object]]]:
    """A delivery (method, header, two body frames), a heartbeat and an ack, as bytes and as pamqp reads them."""
    parts = [
        pamqp.frame.marshal(commands.Basic.Deliver("ctag", 7, False, "llm.events", "message.created"), 1),
        pamqp.frame.marshal(
            ContentHeader(0, len(BODY), commands.Basic.Properties(content_type="application/json")), 1
        ),
        pamqp.frame.marshal(ContentBody(BODY[:500]), 1),
        pamqp.frame.marshal(ContentBody(BODY[500:]), 1),
        pamqp.frame.marshal(Heartbeat(), 0),
        pamqp.frame.marshal(commands.Basic.Ack(9, multiple=True), 2),
    ]
    return b"".join(parts), [pamqp.frame.unmarshal(part) for part in parts]


def _reader(chunks: list[bytes], eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


async def _read_all(receiver: BufferedFrameReceiver) -> list[tuple[int, int, object]]:
    return [frame async for frame in receiver]


def _fields(value: object) -> object:
    """A pamqp object as plain data (slots and attributes, nested), so two decodings compare."""
    if not hasattr(value, "__slots__") and not hasattr(value, "__dict__"):
        return value
    names = [n for cls in type(value).__mro__ for n in getattr(cls, "__slots__", [])] + list(getattr(value, "__dict__", {}))
    return (type(value), {n: _fields(getattr(value, n, "<unset>")) for n in names})


def _same(got: list[tuple[int, int, object]], expected: list[tuple[int, int, object]]) -> None:
    assert [(n, channel, _fields(frame)) for n, channel, frame in got] == [
        (n, channel, _fields(frame)) for n, channel, frame in expected
    ]


async def test_all_frames_in_one_read_come_out_one_by_one_in_order() -> None:
    wire, expected = _wire()
    _same(await _read_all(BufferedFrameReceiver(_reader([wire]))), expected)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=12))
def test_frames_split_anywhere_across_reads_come_out_the_same(cuts: list[int]) -> None:
    wire, expected = _wire()
    points = sorted({c % len(wire) for c in cuts} - {0})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]

    async def read() -> list[tuple[int, int, object]]:
        return await _read_all(BufferedFrameReceiver(_reader(chunks)))

    _same(asyncio.run(read()), expected)


async def test_a_frame_cut_short_by_the_end_of_the_stream_is_a_connection_error() -> None:
    wire, _ = _wire()
    receiver = BufferedFrameReceiver(_reader([wire[:30]]))
    with pytest.raises(AMQPConnectionError, match="unexpectedly closed"):
        await receiver.get_frame()


async def test_a_frame_without_its_end_marker_is_an_invalid_frame() -> None:
    frame = bytearray(pamqp.frame.marshal(Heartbeat(), 0))
    frame[-1] = 0
    with pytest.raises(InvalidFrameError):
        await BufferedFrameReceiver(_reader([bytes(frame)])).get_frame()


async def test_a_protocol_header_in_reply_means_the_broker_refused_the_version() -> None:
    with pytest.raises(ProtocolSyntaxError):
        await BufferedFrameReceiver(_reader([b"AMQP\x00\x00\x09\x01"])).get_frame()


async def test_it_waits_for_the_rest_of_a_frame_that_is_not_all_here_yet() -> None:
    wire, expected = _wire()
    reader = _reader([wire[:5]], eof=False)
    receiver = BufferedFrameReceiver(reader)
    pending = asyncio.ensure_future(receiver.get_frame())
    await asyncio.sleep(0.01)
    assert not pending.done()
    reader.feed_data(wire[5:])
    _same([await pending], expected[:1])


def test_install_makes_new_aiormq_connections_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiormq.connection, "FrameReceiver", aiormq.connection.FrameReceiver)
    frames.install()
    assert aiormq.connection.FrameReceiver is BufferedFrameReceiver


_short = st.text(max_size=40)
_properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": _short,
        "content_encoding": _short,
        "headers": st.dictionaries(
            st.text(min_size=1, max_size=10),
            st.one_of(st.integers(-(2**31), 2**31 - 1), st.text(max_size=20), st.booleans(), st.none()),
            max_size=4,
        ),
        "delivery_mode": st.sampled_from([1, 2]),
        "priority": st.integers(0, 9),
        "correlation_id": _short,
        "reply_to": _short,
        "expiration": st.integers(0, 10**6).map(str),
        "message_id": _short,
        "timestamp": st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ).map(lambda t: t.replace(microsecond=0)),
        "message_type": _short,
        "user_id": _short,
        "app_id": _short,
    },
)


@settings(max_examples=300, deadline=None)
@given(properties=_properties, body_size=st.integers(0, 2**40), weight=st.integers(0, 2**16 - 1))
def test_a_content_header_decodes_as_pamqp_decodes_it(properties: dict, body_size: int, weight: int) -> None:
    wire = pamqp.frame.marshal(ContentHeader(weight, body_size, commands.Basic.Properties(**properties)), 5)
    _same([decode_frame(wire)], [pamqp.frame.unmarshal(wire)])


@settings(max_examples=300, deadline=None)
@given(
    consumer_tag=_short,
    delivery_tag=st.integers(0, 2**63 - 1),
    redelivered=st.booleans(),
    exchange=st.from_regex(r"[a-zA-Z0-9_.:-]{0,40}", fullmatch=True),
    routing_key=_short,
    channel=st.integers(1, 2**16 - 1),
)
def test_a_deliver_frame_decodes_as_pamqp_decodes_it(
    consumer_tag: str, delivery_tag: int, redelivered: bool, exchange: str, routing_key: str, channel: int
) -> None:
    wire = pamqp.frame.marshal(
        commands.Basic.Deliver(consumer_tag, delivery_tag, redelivered, exchange, routing_key), channel
    )
    _same([decode_frame(wire)], [pamqp.frame.unmarshal(wire)])


@pytest.mark.parametrize(
    "frame",
    [
        commands.Basic.Ack(3),
        commands.Basic.ConsumeOk("ctag"),
        commands.Channel.Close(404, "NOT_FOUND", 50, 10),
        ContentBody(b"abc"),
        Heartbeat(),
    ],
    ids=lambda f: type(f).__name__,
)
def test_other_frames_decode_as_pamqp_decodes_them(frame: object) -> None:
    wire = pamqp.frame.marshal(frame, 0 if isinstance(frame, Heartbeat) else 2)
    _same([decode_frame(wire)], [pamqp.frame.unmarshal(wire)])


def test_a_truncated_deliver_frame_fails_as_pamqp_fails() -> None:
    wire = bytearray(pamqp.frame.marshal(commands.Basic.Deliver("ctag", 1, False, "x", "rk"), 1))
    wire[11] = 200  # the consumer tag claims more bytes than the frame holds
    with pytest.raises(PAMQPException):
        pamqp.frame.unmarshal(bytes(wire))
    with pytest.raises(PAMQPException):
        decode_frame(bytes(wire))


def test_properties_that_cannot_be_decoded_are_skipped_and_named_instead_of_failing_the_frame() -> None:
    from tests.support.bad_properties import BAD_UTF8_MARKER, TIMESTAMP_MARKER, undecodable_properties

    properties = commands.Basic.Properties(
        content_type="application/json", message_id=BAD_UTF8_MARKER, timestamp=TIMESTAMP_MARKER, app_id="gateway"
    )
    with undecodable_properties():
        wire = pamqp.frame.marshal(ContentHeader(0, 10, properties), 1)
    with pytest.raises(Exception):  # noqa: B017 - pamqp's own decoder gives up on the whole frame
        pamqp.frame.unmarshal(wire)
    used, channel, header = decode_frame(wire)
    assert (used, channel) == (len(wire), 1)
    assert header.properties.unreadable == ("message_id", "timestamp")
    assert header.properties.message_id is None and header.properties.timestamp is None
    assert header.properties.content_type == "application/json"
    assert header.properties.app_id == "gateway"
