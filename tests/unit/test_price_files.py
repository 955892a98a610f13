"""Price files parsed exactly: LiteLLM's JSON and the CSV, what is skipped, and what refuses the file."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from worker.service.decimals import plain
from worker.service.price_files import PriceFileError, detect_format, parse_price_file

DATA = Path(__file__).resolve().parents[1] / "data"
DAY = date(2026, 12, 5)


def _parse(text: str, name: str = "prices.json", **kwargs) -> object:
    return parse_price_file(text, file_name=name, valid_from=DAY, **kwargs)


def test_the_litellm_sample_gives_exact_prices_and_names_what_it_skipped() -> None:
    parsed = _parse((DATA / "model_prices.json").read_text())
    prices = {p.model: (p.input_cost_per_token, p.output_cost_per_token, p.valid_from) for p in parsed.prices}
    assert prices == {
        "gpt-4o": (Decimal("0.0000025"), Decimal("0.00001"), DAY),
        "gpt-4o-mini": (Decimal("0.00000015"), Decimal("0.0000006"), DAY),
        "claude-3-5-haiku-20241022": (Decimal("0.0000008"), Decimal("0.000004"), DAY),
        "gemini-1.5-flash-8b": (Decimal("0.0000000375"), Decimal("0.00000015"), DAY),
        "text-embedding-3-small": (Decimal("0.00000002"), Decimal("0"), DAY),
    }
    assert sorted(parsed.skipped) == ["dall-e-3", "sample_spec", "whisper-1"]


def test_json_numbers_keep_their_digits_where_a_float_would_not() -> None:
    # 18 significant digits: a float keeps 17 (0.12345678901234568).
    parsed = _parse('{"m": {"input_cost_per_token": 0.123456789012345678, "output_cost_per_token": 1}}')
    assert parsed.prices[0].input_cost_per_token == Decimal("0.123456789012345678")
    assert parsed.prices[0].output_cost_per_token == Decimal(1)


def test_the_csv_sample_takes_its_own_valid_from_or_the_default() -> None:
    parsed = _parse((DATA / "model_prices.csv").read_text(), name="model_prices.csv")
    rows = [(p.model, p.valid_from, plain(p.input_cost_per_token), plain(p.output_cost_per_token))
            for p in parsed.prices]
    assert rows == [
        ("gpt-4o", date(2026, 1, 1), "0.0000025", "0.00001"),
        ("gpt-4o", date(2026, 12, 1), "0.00000125", "0.000005"),
        ("mistral-small-latest", DAY, "0.0000001", "0.0000003"),
        ("llama-3.1-8b-instruct", DAY, "0.000000055", "0.000000055"),
    ]
    assert parsed.skipped == {}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [("p.json", "", "litellm"), ("p.CSV", "{", "csv"), ("prices", ' \n{"a": {}}', "litellm"),
     ("prices.txt", "model,input_cost_per_token,output_cost_per_token\n", "csv")],
)
def test_the_format_follows_the_extension_then_the_content(name: str, text: str, expected: str) -> None:
    assert detect_format(name, text) == expected


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"a": {"input_cost_per_token": 1e-6,\n "output_cost_per_token": }}', "line 2, column 27"),
        ('[{"input_cost_per_token": 1}]', "JSON object"),
        ('{"good": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},'
         ' "bad": {"input_cost_per_token": -1e-6, "output_cost_per_token": 2e-6}}', "entry 'bad', input_cost_per_token"),
        ('{"bad": {"input_cost_per_token": "0.000001", "output_cost_per_token": 2e-6}}', "must be a JSON number"),
        ('{"bad": {"input_cost_per_token": 1e-6, "output_cost_per_token": NaN}}', "NaN"),
        ('{"bad": {"input_cost_per_token": 1e-19, "output_cost_per_token": 0}}', "entry 'bad', input_cost_per_token"),
        ('{"bad": {"input_cost_per_token": 1e12, "output_cost_per_token": 0}}', "entry 'bad', input_cost_per_token"),
        ('{"bad": "free"}', "entry 'bad': must be an object"),
        ('{"m": {"input_cost_per_token": 1, "output_cost_per_token": 1}, "m": {}}', "'m' appears twice"),
    ],
)
def test_a_bad_litellm_file_is_refused_with_where(text: str, where: str) -> None:
    with pytest.raises(PriceFileError, match=where.replace("(", r"\(")):
        _parse(text)


HEADER = "model,input_cost_per_token,output_cost_per_token"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name,input,output\nm,1,1\n", "line 1: the header"),
        (f"{HEADER}\nm,0.000001,0.000002\nn,0.000001\n", "line 3: 2 fields"),
        (f"{HEADER}\nm,0.000001,0.000002\nn,abc,1\n", "line 3, input_cost_per_token"),
        (f"{HEADER}\nm,0.000001,-2\n", "line 2, output_cost_per_token"),
        (f"{HEADER}\nm,0.0000000000000000001,0\n", "line 2, input_cost_per_token"),
        (f"{HEADER}\n,1,1\n", "line 2: model"),
        (f"{HEADER},valid_from\nm,1,1,2026-13-01\n", "line 2: valid_from"),
        (f"{HEADER},valid_from\nm,1,1,2026-W01-1\n", "line 2: valid_from"),
        (f"{HEADER}\nm,1,1\nm,2,2\n", "line 3: 'm' from 2026-12-05 is also on line 2"),
        (f'{HEADER}\n"m,1,1\n', "line"),
    ],
)
def test_a_bad_csv_file_is_refused_with_its_line(text: str, where: str) -> None:
    with pytest.raises(PriceFileError, match=where):
        _parse(text, name="prices.csv")


def test_blank_csv_lines_and_a_byte_order_mark_are_accepted() -> None:
    parsed = _parse(f"\ufeff{HEADER}\r\n\r\nm,1.5E-7,0\r\n", name="p.csv")
    assert [(p.model, p.input_cost_per_token) for p in parsed.prices] == [("m", Decimal("1.5E-7"))]


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("1.25E-7"), "0.000000125"), (Decimal("0.001250000000"), "0.00125"), (Decimal("100"), "100"),
     (Decimal("0E-12"), "0"), (Decimal("123456789012345678.123456789012"), "123456789012345678.123456789012")],
)
def test_decimals_are_written_positionally_and_exactly(value: Decimal, text: str) -> None:
    assert plain(value) == text
