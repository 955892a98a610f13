"""Publishing what pamqp's encoder refuses to write: header tables and properties encoded by hand.

A gateway in another language can send a long string (`S`) that is not UTF-8, a double
(`d`) beyond a 32-bit float, a delivery mode other than 1 or 2. pamqp decodes all of them
but will not encode them, so tests write those bytes themselves.
"""

from __future__ import annotations

import struct
from typing import Any

import aio_pika
from pamqp import commands, encode


def long_string(raw: bytes) -> bytes:
    """A long string field value (`S`) holding exactly `raw`, UTF-8 or not."""
    return b"S" + struct.pack(">I", len(raw)) + raw


def double(value: float) -> bytes:
    """A double field value (`d`): 64 bits, where pamqp would write a 32-bit float."""
    return b"d" + struct.pack(">d", value)


def table(plain: dict[str, Any], raw: dict[str, bytes]) -> bytes:
    """A field table: `plain` as pamqp writes it, then each `raw` field value as given."""
    fields = encode.field_table(plain)[4:] + b"".join(
        bytes([len(name.encode())]) + name.encode() + value for name, value in raw.items()
    )
    return struct.pack(">I", len(fields)) + fields


class RawProperties(commands.Basic.Properties):
    """Basic properties whose header table is written as given and whose values are not validated."""

    def __init__(self, headers_wire: bytes, **values: Any) -> None:
        delivery_mode = values.pop("delivery_mode", None)
        super().__init__(headers={"placeholder": 1}, **values)
        # Set after __init__: the constructor validates, marshalling does not.
        self.delivery_mode = delivery_mode
        self._headers_wire = headers_wire

    def encode_property(self, name: str, value: Any) -> bytes:
        if name == "headers":
            return self._headers_wire
        return super().encode_property(name, value)


async def publish_raw_properties(
    amqp_url: str, routing_key: str, body: bytes, properties: RawProperties, exchange: str = ""
) -> None:
    """Publish with confirms and `mandatory` through aiormq, properties as they are."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        raw = await channel.get_underlay_channel()
        confirmation = await raw.basic_publish(
            body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=True
        )
        assert isinstance(confirmation, commands.Basic.Ack), confirmation
    finally:
        await connection.close()
