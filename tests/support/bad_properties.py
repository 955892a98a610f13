"""Publishing AMQP properties no decoder can read: a non-UTF-8 short string, a timestamp of 2^64 - 1.

pamqp refuses to encode such values, so for one `with` block its encoders write these raw
bytes for the marker values below instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pamqp.encode

BAD_UTF8_MARKER = "bad-utf8-marker"
BAD_UTF8_WIRE = bytes([len(BAD_UTF8_MARKER)]) + b"\xff\xfe" * 7 + b"\xc3"
TIMESTAMP_MARKER = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
TIMESTAMP_WIRE = b"\xff" * 8


@contextmanager
def undecodable_properties() -> Iterator[None]:
    """Within the block, `BAD_UTF8_MARKER` and `TIMESTAMP_MARKER` go on the wire undecodable."""
    methods = pamqp.encode.METHODS
    short_string, timestamp = methods["shortstr"], methods["timestamp"]

    def bad_short_string(value: str) -> bytes:
        return BAD_UTF8_WIRE if value == BAD_UTF8_MARKER else short_string(value)

    def bad_timestamp(value: object) -> bytes:
        return TIMESTAMP_WIRE if value == TIMESTAMP_MARKER else timestamp(value)

    methods["shortstr"], methods["timestamp"] = bad_short_string, bad_timestamp
    try:
        yield
    finally:
        methods["shortstr"], methods["timestamp"] = short_string, timestamp
