"""`worker prices load FILE` and `worker prices list [MODEL]`: the price table costs are computed from.

A load is one transaction: every price of the file, or (on any bad price) none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from worker.db.engine import create_engine
from worker.db.prices import list_prices, upsert_prices
from worker.db.unit_of_work import UnitOfWork
from worker.service.decimals import plain
from worker.service.price_files import PriceFile, PriceFileError, parse_day, parse_price_file
from worker.settings import Settings

EXIT_BAD_FILE = 2


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    prices = subparsers.add_parser("prices", help="load and list model prices").add_subparsers(
        dest="prices_command", required=True
    )
    load = prices.add_parser(
        "load", help="upsert a price file (LiteLLM's model_prices_and_context_window.json or CSV), all or nothing"
    )
    load.add_argument("file", type=Path, metavar="FILE")
    load.add_argument(
        "--valid-from", type=_day, default=None, metavar="YYYY-MM-DD",
        help="first UTC day the prices apply (default: today, UTC); a CSV valid_from column overrides it",
    )
    load.add_argument(
        "--format", choices=("auto", "litellm", "csv"), default="auto",
        help="auto: by the extension (.json, .csv), else by the content",
    )
    load.set_defaults(handler=run_load)
    show = prices.add_parser("list", help="print the price table (one model's rows when given)")
    show.add_argument("model", nargs="?", default=None, metavar="MODEL")
    show.set_defaults(handler=run_list)


def read_price_file(path: Path, valid_from: date | None, file_format: str) -> PriceFile:
    """The file's prices; PriceFileError (with the line or entry) for anything unreadable or wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(f"cannot read it ({exc.__class__.__name__}: {exc})") from None
    day = valid_from or datetime.now(UTC).date()
    return parse_price_file(text, file_name=path.name, valid_from=day, file_format=file_format)


async def load_prices(settings: Settings, price_file: PriceFile) -> tuple[int, int]:
    """Upsert the file's prices in one transaction; (inserted, updated)."""
    engine = create_engine(settings, pool_size=1)
    try:
        async with UnitOfWork(engine) as uow:
            counts = await upsert_prices(uow.sql, price_file.prices)
            await uow.commit()
            return counts
    finally:
        await engine.dispose()


def run_load(args: argparse.Namespace, settings: Settings) -> int:
    try:
        price_file = read_price_file(args.file, args.valid_from, args.format)
    except PriceFileError as exc:
        print(f"error: {args.file}: {exc}; nothing loaded", file=sys.stderr)
        return EXIT_BAD_FILE
    inserted, updated = asyncio.run(load_prices(settings, price_file))
    for model, reason in price_file.skipped.items():
        print(f"skipped {model}: {reason}", file=sys.stderr)
    print(
        f"loaded {len(price_file.prices)} prices ({inserted} new, {updated} replaced), "
        f"skipped {len(price_file.skipped)} entries, from {args.file}"
    )
    return 0


async def _list(settings: Settings, model: str | None) -> list:
    engine = create_engine(settings, pool_size=1)
    try:
        async with UnitOfWork(engine) as uow:
            return await list_prices(uow.sql, model)
    finally:
        await engine.dispose()


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = asyncio.run(_list(settings, args.model))
    print("model\tvalid_from\tinput_cost_per_token\toutput_cost_per_token")
    for model, valid_from, input_price, output_price, _ in rows:
        print(f"{model}\t{valid_from}\t{plain(input_price)}\t{plain(output_price)}")
    if args.model is not None and not rows:
        print(f"no prices for {args.model!r}", file=sys.stderr)
        return 1
    return 0
