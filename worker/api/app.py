"""`create_app(settings)`: the FastAPI application, built when called (never at import)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.api import problems
from worker.api.middleware import AccessLog, ApiMetrics, BodyLimit
from worker.api.routers import api_keys, conversations, health, usage, users
from worker.db.engine import create_engine
from worker.settings import Settings


class MissingAdminToken(RuntimeError):
    """The API has no administrator token configured (`WORKER_API_ADMIN_TOKEN`)."""


def create_app(settings: Settings, *, engine: AsyncEngine | None = None) -> FastAPI:
    """The API over the worker's database; it owns (and disposes of) its engine unless given one."""
    if settings.api_admin_token is None or not settings.api_admin_token.get_secret_value():
        raise MissingAdminToken("set WORKER_API_ADMIN_TOKEN (or its file in WORKER_SECRETS_DIR)")
    owned = engine is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            await app.state.engine.dispose()

    app = FastAPI(
        title="llm-persistence-worker API",
        version="1",
        summary="Users, API keys, quota, conversations, usage and search over the worker's database.",
        lifespan=lifespan,
    )
    app.state.engine = engine if engine is not None else create_engine(settings)
    app.state.admin_token = settings.api_admin_token.get_secret_value()
    app.state.metrics = ApiMetrics()
    problems.install(app)
    for module in (users, conversations, usage, api_keys, health):
        app.include_router(module.router)
    # Outermost first: the access log sees the 413s too.
    app.add_middleware(BodyLimit)
    app.add_middleware(AccessLog, metrics=app.state.metrics)
    return app
