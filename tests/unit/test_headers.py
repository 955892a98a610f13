"""Received header tables are made encodable: pamqp can always write what `encodable_table` returns."""

from __future__ import annotations

import datetime
import decimal
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import decode, encode
from pamqp.commands import Basic

from worker.broker.headers import MAX_DEPTH, SAFE_FORM_PREFIX, encodable_table

NOT_UTF8 = b"caf\xe9 \xff\xfe"


def test_a_long_string_that_is_not_utf8_is_carried_as_the_same_bytes_with_a_note() -> None:
    _, received = decode.field_table(_wire_table(b"x-origin", b"S", NOT_UTF8))
    assert received == {"x-origin": NOT_UTF8}

    safe, notes = encodable_table(received)

    assert safe == {"x-origin": bytearray(NOT_UTF8)}
    assert decode.field_table(encode.field_table(safe))[1] == {"x-origin": bytearray(NOT_UTF8)}
    assert notes == ["header x-origin carried as a byte array (long string not UTF-8)"]


def test_a_double_above_the_float_range_becomes_marked_text() -> None:
    _, received = decode.field_table(_wire_table(b"x-score", b"d", struct.pack(">d", 1e300)))
    safe, notes = encodable_table(received)
    assert safe == {"x-score": f"{SAFE_FORM_PREFIX}double:1e+300"}
    assert notes == ["header x-score carried as text (double out of the encodable range)"]
    assert "1e+300" not in " ".join(notes)


def test_values_nested_in_arrays_and_tables_are_made_safe_in_place() -> None:
    received = {"x-trace": [1, b"\xff", {"hop": b"\xfe", "at": datetime.datetime(1960, 1, 1)}], "ok": "yes"}
    safe, notes = encodable_table(received)
    assert safe == {
        "x-trace": [
            1, bytearray(b"\xff"),
            {"hop": bytearray(b"\xfe"), "at": f"{SAFE_FORM_PREFIX}timestamp:1960-01-01T00:00:00"},
        ],
        "ok": "yes",
    }
    assert [note.split()[1] for note in notes] == ["x-trace[1]", "x-trace[2].hop", "x-trace[2].at"]


def test_what_no_table_can_hold_is_dropped_with_a_note_that_never_shows_it() -> None:
    class Secret:
        def __repr__(self) -> str:
            return "the user's private words"

    safe, notes = encodable_table({"x-object": Secret(), "x-int": 2**64, "x-nan": decimal.Decimal("NaN")})
    assert safe == {"x-int": f"{SAFE_FORM_PREFIX}int:{2**64}", "x-nan": f"{SAFE_FORM_PREFIX}decimal:NaN"}
    assert "header x-object dropped (a Secret cannot be encoded)" in notes
    assert not any("private" in note or str(2**64) in note for note in notes)


def test_an_encodable_table_is_returned_as_it_is_without_notes() -> None:
    table = {"x-origin": "gateway-eu", "x-attempts": 3, "x-when": datetime.datetime(2026, 12, 1),
             "x-list": [True, None], "x-raw": bytearray(b"\xff"), "x-nested": {"a": 1.5, "b": decimal.Decimal("1.25")}}
    assert encodable_table(table) == (table, [])


def test_tables_nested_too_deep_are_dropped() -> None:
    deep: dict = {"leaf": 1}
    for _ in range(MAX_DEPTH + 5):
        deep = {"n": deep}
    safe, notes = encodable_table(deep)
    encode.field_table(safe)
    assert len(notes) == 1 and "nested deeper than" in notes[0]


def test_field_names_that_pamqp_would_truncate_or_cannot_write_are_rewritten() -> None:
    safe, notes = encodable_table({"k" * 200: 1, "bad\ud800": 2})
    assert set(safe) == {"k" * 128, "bad\\ud800"}
    assert len(notes) == 2
    encode.field_table(safe)


# --- properties ---------------------------------------------------------------------------

_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(),
    st.sampled_from(["\ud800", "a\udfffb"]),
    st.binary(),
    st.binary().map(bytearray),
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.builds(object),
    st.tuples(st.integers(), st.text()),
)
_keys = st.one_of(st.text(max_size=300), st.binary(max_size=20), st.integers())
_tables = st.recursive(
    _leaves, lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(_keys, children, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _tables, max_size=8))
def test_any_table_comes_out_encodable_and_stable(table: dict) -> None:
    safe, _ = encodable_table(table)
    written = encode.field_table(safe)
    Basic.Properties(headers=safe).marshal()
    # What comes out is already safe: a second pass changes nothing.
    again, notes = encodable_table(safe)
    assert notes == [] and encode.field_table(again) == written


# A table as it could arrive on the wire: any type tag the decoder knows, any payload bytes.
_TAGS = b"tbBsuIilLfdDSTVx"
_wire_fields = st.lists(
    st.tuples(st.binary(min_size=1, max_size=20), st.sampled_from([bytes([t]) for t in _TAGS]), st.binary(max_size=24)),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(_wire_fields)
def test_any_table_pamqp_decodes_comes_out_encodable(fields: list[tuple[bytes, bytes, bytes]]) -> None:
    data = b"".join(_wire_field(name, tag, payload) for name, tag, payload in fields)
    try:
        _, received = decode.field_table(struct.pack(">I", len(data)) + data)
    except (ValueError, UnicodeDecodeError, OverflowError, OSError, IndexError, struct.error):
        return  # the frame decoder's business, not settlement's
    safe, _ = encodable_table(received)
    encode.field_table(safe)


def _wire_field(name: bytes, tag: bytes, payload: bytes) -> bytes:
    sizes = {b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4, b"l": 8, b"L": 8, b"f": 4, b"d": 8,
             b"D": 5, b"T": 8, b"V": 0}
    if tag in sizes:
        body = payload[: sizes[tag]].ljust(sizes[tag], b"\x00")
    else:  # S and x: a length, then the bytes
        body = struct.pack(">I", len(payload)) + payload
    return bytes([len(name)]) + name + tag + body


def _wire_table(name: bytes, tag: bytes, body: bytes) -> bytes:
    data = _wire_field(name, tag, body)
    return struct.pack(">I", len(data)) + data
