"""`worker users create`: adds a user (the worker counts tokens only for existing users);
`worker users budget`: changes a user's limits and budget period (as `PATCH /users/{user_id}` does)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError

from worker.api.schemas import CostLimitIn, Tier, TokensLimit
from worker.contract.events import COST_RULE
from worker.db.budgets import BUDGET_PERIODS, KEEP, BudgetChange, FilledPeriod, NoSuchUser, change_budget
from worker.db.engine import create_engine
from worker.db.models import User
from worker.db.unit_of_work import UnitOfWork
from worker.producer.identity import project_uuid
from worker.service.decimals import plain
from worker.settings import Settings

# The worker never authenticates anyone; "!" can never match a password hash.
UNUSABLE_PASSWORD = "!"


async def create_user(
    settings: Settings, email: str, tokens_limit: int | None, tier: str | None, external_id: str | None = None
) -> uuid.UUID:
    """Insert the user; with `external_id`, its id is that id's project UUID (`worker.producer.identity`)."""
    user_id = project_uuid(external_id) if external_id is not None else uuid.uuid4()
    engine = create_engine(settings, pool_size=1)
    try:
        async with UnitOfWork(engine) as uow:
            user = User(id=user_id, email=email, hashed_password=UNUSABLE_PASSWORD)
            if tokens_limit is not None:
                user.tokens_limit = tokens_limit
            if tier is not None:
                user.tier = tier
            uow.users.add(user)
            await uow.commit()
            return user.id
    finally:
        await engine.dispose()


def register(subparsers: argparse._SubParsersAction) -> None:
    users = subparsers.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user and print its id")
    create.add_argument("--email", required=True)
    create.add_argument("--tokens-limit", type=int, default=None)
    create.add_argument("--tier", default=None)
    create.add_argument(
        "--external-id", default=None,
        help="the gateway's name for the user (LiteLLM's user id): the id becomes its UUID (docs/CONTRACT.md)",
    )
    create.set_defaults(handler=run_create)
    budget = users.add_parser("budget", help="change a user's limits and budget period")
    budget.add_argument("user_id", type=uuid.UUID, metavar="USER_ID")
    budget.add_argument("--period", choices=BUDGET_PERIODS, default=None,
                        help="calendar day or month (UTC), or none (lifetime); entering one fills its usage")
    budget.add_argument("--tokens-limit", type=_as(TokensLimit, "an integer from 0 to 2^63-1"), default=None,
                        help="tokens per budget period")
    cost = budget.add_mutually_exclusive_group()
    cost.add_argument("--cost-limit", type=_as(CostLimitIn, COST_RULE), default=KEEP, metavar="USD",
                      help="USD per budget period, a decimal")
    cost.add_argument("--no-cost-limit", dest="cost_limit", action="store_const", const=None,
                      help="remove the cost limit")
    budget.add_argument("--tier", type=_as(Tier, "1 to 50 characters, no NUL"), default=None)
    budget.set_defaults(handler=run_budget)


def _as(field_type: Any, rule: str) -> Callable[[str], Any]:
    """An argparse type checking a value by the API's rule for the same field (one rule for both)."""
    adapter = TypeAdapter(field_type)

    def parse(text: str) -> Any:
        try:
            return adapter.validate_strings(text)
        except ValidationError:
            raise argparse.ArgumentTypeError(f"must be {rule}") from None

    return parse


async def set_budget(settings: Settings, user_id: uuid.UUID, change: BudgetChange) -> FilledPeriod | None:
    engine = create_engine(settings, pool_size=1)
    try:
        async with UnitOfWork(engine) as uow:
            filled = await change_budget(uow.sql, user_id, change)
            await uow.commit()
            return filled
    finally:
        await engine.dispose()


def run_budget(args: argparse.Namespace, settings: Settings) -> int:
    change = BudgetChange(tier=args.tier, tokens_limit=args.tokens_limit, cost_limit_usd=args.cost_limit,
                          budget_period=args.period)
    try:
        filled = asyncio.run(set_budget(settings, args.user_id, change))
    except NoSuchUser:
        print(f"error: no user {args.user_id}", file=sys.stderr)
        return 1
    print(f"updated user {args.user_id}")
    if filled is not None:
        print(f"{filled.period} from {filled.start}: {filled.tokens} tokens, {plain(filled.cost_usd)} USD so far")
    return 0


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    try:
        user_id = asyncio.run(create_user(settings, args.email, args.tokens_limit, args.tier, args.external_id))
    except ValueError as exc:  # an empty external id
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except IntegrityError:
        taken = f"email {args.email!r}" + (" or this external id" if args.external_id is not None else "")
        print(f"error: a user with {taken} already exists", file=sys.stderr)
        return 1
    print(user_id)
    return 0
