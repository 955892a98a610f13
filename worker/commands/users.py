"""`worker users create`: adds a user (the worker counts tokens only for existing users)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from sqlalchemy.exc import IntegrityError

from worker.db.engine import create_engine
from worker.db.models import User
from worker.db.unit_of_work import UnitOfWork
from worker.settings import Settings

# The worker never authenticates anyone; "!" can never match a password hash.
UNUSABLE_PASSWORD = "!"


async def create_user(settings: Settings, email: str, tokens_limit: int | None, tier: str | None) -> uuid.UUID:
    engine = create_engine(settings, pool_size=1)
    try:
        async with UnitOfWork(engine) as uow:
            user = User(id=uuid.uuid4(), email=email, hashed_password=UNUSABLE_PASSWORD)
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
    create.set_defaults(handler=run_create)


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    try:
        user_id = asyncio.run(create_user(settings, args.email, args.tokens_limit, args.tier))
    except IntegrityError:
        print(f"error: a user with email {args.email!r} already exists", file=sys.stderr)
        return 1
    print(user_id)
    return 0
