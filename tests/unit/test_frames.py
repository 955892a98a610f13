"""`BufferedFrameReceiver` yields exactly the frames aiormq's own receiver would, however the bytes arrive."""

from __future__ import annotations

import asyncio

import aiormq.connection
import pamqp.frame
import pytest
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from worker.broker import frames
from worker.broker.frames import BufferedFrameReceiver

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


def _same(got: list[tuple[int, int, object]], expected: list[tuple[int, int, object]]) -> None:
    assert [(n, channel, type(frame), vars(frame)) for n, channel, frame in got] == [
        (n, channel, type(frame), vars(frame)) for n, channel, frame in expected
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
