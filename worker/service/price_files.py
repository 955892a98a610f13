"""Price files, parsed exactly: LiteLLM's `model_prices_and_context_window.json` and a small CSV.

Pure: text in, prices out (`worker prices load` stores them). Prices are decimals read from
the file's own digits, never through a float. A file with one bad price is refused whole,
with the line or entry that is wrong, so a load is all or nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from worker.service.rows import Price

# model_prices: NUMERIC(30, 18) prices, VARCHAR(100) model names.
PRICE_FRACTION_DIGITS = 18
PRICE_INTEGER_DIGITS = 12
MODEL_MAX_LENGTH = 100
INPUT, OUTPUT = "input_cost_per_token", "output_cost_per_token"
CSV_COLUMNS = ("model", INPUT, OUTPUT)
CSV_OPTIONAL_COLUMNS = ("valid_from",)
# LiteLLM's documentation entry: a template, not a model.
LITELLM_TEMPLATE = "sample_spec"
PRICE_RULE = (
    f"must be a non-negative decimal with at most {PRICE_FRACTION_DIGITS} digits after the point "
    f"and {PRICE_INTEGER_DIGITS} before it"
)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CSV_DECIMAL = re.compile(r"\d+(\.\d*)?([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?")

Format = Literal["litellm", "csv"]


class PriceFileError(ValueError):
    """The file cannot be loaded; the message says where (line or entry) and why."""




@dataclass(frozen=True)
class PriceFile:
    """The prices a file holds, and the entries left out with the reason (LiteLLM only)."""

    prices: list[Price]
    skipped: dict[str, str] = field(default_factory=dict)


def parse_price_file(text: str, *, file_name: str, valid_from: date, file_format: str = "auto") -> PriceFile:
    """The file's prices; `valid_from` applies to every price that does not carry its own."""
    chosen = detect_format(file_name, text) if file_format == "auto" else file_format
    if chosen == "litellm":
        return parse_litellm(text, valid_from)
    if chosen == "csv":
        return parse_csv(text, valid_from)
    raise PriceFileError(f"unknown format {file_format!r} (auto, litellm or csv)")


def detect_format(file_name: str, text: str) -> Format:
    """By the extension (.json, .csv), else by the content (a JSON object starts with `{`)."""
    lowered = file_name.lower()
    if lowered.endswith(".json"):
        return "litellm"
    if lowered.endswith(".csv"):
        return "csv"
    return "litellm" if text.lstrip("\ufeff \t\r\n").startswith("{") else "csv"


def exact_price(value: Decimal, where: str) -> Decimal:
    """The price itself when finite, non-negative and stored by NUMERIC(30, 18) without rounding."""
    if not value.is_finite() or value < 0 or (value and value.adjusted() >= PRICE_INTEGER_DIGITS):
        raise PriceFileError(f"{where}: {PRICE_RULE}")
    # Counted on the digits (trailing zeros do not count), never through a rounding context.
    _, digits, exponent = value.as_tuple()
    significant = "".join(map(str, digits)).rstrip("0")
    if value and -int(exponent) - (len(digits) - len(significant)) > PRICE_FRACTION_DIGITS:
        raise PriceFileError(f"{where}: {PRICE_RULE}")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise PriceFileError(f"key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> Any:
    raise PriceFileError(f"{name} is not a number a price can have")


def parse_litellm(text: str, valid_from: date) -> PriceFile:
    """An object of model → entry; each entry's `input_cost_per_token` and `output_cost_per_token`."""
    try:
        # JSON numbers keep their digits: Decimal, never float.
        document = json.loads(
            text.removeprefix("\ufeff"), parse_float=Decimal, parse_int=Decimal,
            parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys,
        )
    except json.JSONDecodeError as exc:
        raise PriceFileError(f"line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg})") from None
    if not isinstance(document, dict):
        raise PriceFileError("the file must be a JSON object of model name → entry")
    prices: list[Price] = []
    skipped: dict[str, str] = {}
    for model, entry in document.items():
        if model == LITELLM_TEMPLATE:
            skipped[model] = "LiteLLM's template entry"
            continue
        if not isinstance(entry, dict):
            raise PriceFileError(f"entry {model!r}: must be an object")
        if INPUT not in entry or OUTPUT not in entry:
            missing = " and ".join(key for key in (INPUT, OUTPUT) if key not in entry)
            skipped[model] = f"no {missing}"
            continue
        if not _storable_model(model):
            # No event can name it (the stored model is VARCHAR(100)): nothing to price.
            skipped[model] = f"a model name has 1 to {MODEL_MAX_LENGTH} characters and no NUL"
            continue
        input_price, output_price = (_litellm_number(entry[key], f"entry {model!r}, {key}") for key in (INPUT, OUTPUT))
        prices.append(Price(model, valid_from, input_price, output_price))
    return PriceFile(prices, skipped)


def _litellm_number(value: Any, where: str) -> Decimal:
    if not isinstance(value, Decimal):  # parse_float and parse_int make every JSON number one
        raise PriceFileError(f"{where}: must be a JSON number")
    return exact_price(value, where)


def parse_csv(text: str, valid_from: date) -> PriceFile:
    """Header `model,input_cost_per_token,output_cost_per_token[,valid_from]`, one price a line."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader, [])]
        known = CSV_COLUMNS + CSV_OPTIONAL_COLUMNS
        if sorted(header) not in (sorted(CSV_COLUMNS), sorted(known)):
            raise PriceFileError(
                f"line 1: the header must name the columns {', '.join(CSV_COLUMNS)} (and optionally valid_from)"
            )
        column = {name: header.index(name) for name in header}
        prices: list[Price] = []
        seen: dict[tuple[str, date], int] = {}
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise PriceFileError(f"line {line}: {len(row)} fields, the header has {len(header)}")
            price = _csv_price(row, column, valid_from, line)
            key = (price.model, price.valid_from)
            if key in seen:
                raise PriceFileError(f"line {line}: {price.model!r} from {price.valid_from} is also on line {seen[key]}")
            seen[key] = line
            prices.append(price)
    except csv.Error as exc:
        raise PriceFileError(f"line {reader.line_num}: not CSV ({exc})") from None
    return PriceFile(prices)


def _csv_price(row: list[str], column: dict[str, int], default_valid_from: date, line: int) -> Price:
    model = row[column["model"]].strip()
    if not _storable_model(model):
        raise PriceFileError(f"line {line}: model must have 1 to {MODEL_MAX_LENGTH} characters and no NUL")
    valid_from = default_valid_from
    if "valid_from" in column and (day := row[column["valid_from"]].strip()):
        try:
            valid_from = parse_day(day)
        except ValueError as exc:
            raise PriceFileError(f"line {line}: valid_from {exc}") from None
    input_price, output_price = (_csv_number(row[column[key]], f"line {line}, {key}") for key in (INPUT, OUTPUT))
    return Price(model, valid_from, input_price, output_price)


def parse_day(text: str) -> date:
    """A calendar day written YYYY-MM-DD (only that form: `date.fromisoformat` takes others too)."""
    try:
        if _DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError("must be a date, YYYY-MM-DD")


def _storable_model(model: str) -> bool:
    return 0 < len(model) <= MODEL_MAX_LENGTH and "\x00" not in model


def _csv_number(cell: str, where: str) -> Decimal:
    text = cell.strip()
    if not _CSV_DECIMAL.fullmatch(text):
        raise PriceFileError(f"{where}: {PRICE_RULE}")
    try:
        return exact_price(Decimal(text), where)
    except InvalidOperation:
        raise PriceFileError(f"{where}: {PRICE_RULE}") from None
