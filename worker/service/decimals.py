"""Exact decimal text for people and JSON: costs and prices are never floats."""

from __future__ import annotations

from decimal import Decimal


def plain(value: Decimal) -> str:
    """`value` in positional notation without trailing zeros: `0.00125`, never `1.25E-3` or a rounded
    form (`Decimal.normalize` would round to the context's 28 digits; this only drops zeros)."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
