"""Received header tables made publishable again: what pamqp cannot encode is converted or dropped.

pamqp decodes more than it can encode: a long string (`S`) that is not UTF-8 arrives as
`bytes`, a double (`d`) is re-encoded as a 32-bit float and overflows above its range, a
timestamp before 1970 or a decimal whose mantissa needs more than 32 bits has no
encoding. The worker copies a delivery's headers onto every retry and dead-letter copy,
so one such value would fail every settlement of that delivery.

`encodable_table` asks pamqp's own encoder about every value and keeps what it accepts.
The rest is carried over in a safe form:

- bytes: as a byte array (`x`), the same bytes (pamqp decodes that as `bytearray`);
- a number, timestamp or text the encoder refuses: as the long string
  `unencodable:<kind>:<text>` (`SAFE_FORM_PREFIX`), e.g. `unencodable:double:1e+300`,
  `unencodable:int:18446744073709551616` (`int-hex` past 4000 bits), `unencodable:timestamp:1969-12-31T23:59:59`,
  `unencodable:text-hex:<UTF-8 bytes in hex, surrogates kept>`;
- anything else (a type a table cannot hold, nesting deeper than `MAX_DEPTH`): dropped.

Each change yields a note naming the header (its path inside nested tables and arrays)
and what was done, never the value, for `x-error-detail`.
"""

from __future__ import annotations

import datetime
import decimal
import re
import time
from collections.abc import Mapping
from typing import Any

from pamqp.encode import encode_table_value

SAFE_FORM_PREFIX = "unencodable:"
# Tables and arrays nested deeper are dropped: pamqp's encoder (and decoder) recurse per level.
MAX_DEPTH = 64
# pamqp truncates longer field names itself (and logs the name); done here with a note instead.
MAX_KEY_BYTES = 128
_NAME_SHOWN = 64
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._\-\[\]]")
_DROP = object()


def encodable_table(headers: Mapping[Any, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """A copy of `headers` that pamqp can encode, and notes of what was changed."""
    notes: list[str] = []
    return _table(headers or {}, "", 0, notes), notes


def _table(table: Mapping[Any, Any], path: str, depth: int, notes: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = _key(raw_key, path, notes)
        where = f"{path}.{key}" if path else key
        converted = _value(value, where, depth, notes)
        if converted is not _DROP:
            result[key] = converted
    return result


def _key(raw_key: Any, path: str, notes: list[str]) -> str:
    """A field name pamqp can write: UTF-8 text of at most 128 bytes."""
    if isinstance(raw_key, bytes | bytearray):
        key = bytes(raw_key).decode("utf-8", "backslashreplace")
    elif isinstance(raw_key, str):
        key = raw_key
    else:
        key = str(raw_key) if isinstance(raw_key, int | float | bool) else type(raw_key).__name__
    encoded = key.encode("utf-8", "backslashreplace")
    if len(encoded) > MAX_KEY_BYTES:
        encoded = encoded[:MAX_KEY_BYTES]
    written = encoded.decode("utf-8", "ignore")
    if written != raw_key:
        notes.append(f"header name {_shown(path, written)} rewritten (not UTF-8 text of at most 128 bytes)")
    return written


def _value(value: Any, where: str, depth: int, notes: list[str]) -> Any:
    if isinstance(value, Mapping | list | tuple):
        if depth >= MAX_DEPTH:
            notes.append(f"header {_shown(where)} dropped (nested deeper than {MAX_DEPTH})")
            return _DROP
        if isinstance(value, Mapping):
            return _table(value, where, depth + 1, notes)
        items = (_value(item, f"{where}[{n}]", depth + 1, notes) for n, item in enumerate(value))
        return [item for item in items if item is not _DROP]
    if isinstance(value, bytes | memoryview):
        notes.append(f"header {_shown(where)} carried as a byte array (long string not UTF-8)")
        return bytearray(value)
    try:
        encode_table_value(value)
    except Exception:  # noqa: BLE001 - whatever the encoder refuses is converted or dropped below
        return _safe_form(value, where, notes)
    return value


def _safe_form(value: Any, where: str, notes: list[str]) -> Any:
    kind, text = _described(value)
    if kind is None:
        notes.append(f"header {_shown(where)} dropped (a {type(value).__name__} cannot be encoded)")
        return _DROP
    notes.append(f"header {_shown(where)} carried as text ({kind} out of the encodable range)")
    return f"{SAFE_FORM_PREFIX}{kind}:{text}"


def _described(value: Any) -> tuple[str | None, str]:
    if isinstance(value, float):
        return "double", repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # Python refuses to write an int of more than 4300 digits in decimal.
        return ("int", str(value)) if value.bit_length() < 4000 else ("int-hex", hex(value))
    if isinstance(value, decimal.Decimal):
        return "decimal", str(value)
    if isinstance(value, datetime.datetime):
        return "timestamp", value.isoformat()
    if isinstance(value, time.struct_time):
        return "timestamp", time.strftime("%Y-%m-%dT%H:%M:%S", value)
    if isinstance(value, str):
        return "text-hex", value.encode("utf-8", "surrogatepass").hex()
    return None, ""


def _shown(path: str, key: str | None = None) -> str:
    """A header's name as a note may show it: printable ASCII, bounded."""
    name = f"{path}.{key}" if path and key is not None else (key if key is not None else path)
    return _UNSAFE_NAME_CHARS.sub("?", name)[:_NAME_SHOWN] or "?"
