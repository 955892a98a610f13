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
from worker.producer.identity import project_uuid
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
