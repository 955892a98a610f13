"""Probes and metrics on the API port: /livez (the process answers), /readyz (the database is usable)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.api.schemas import Health

router = APIRouter(tags=["health"])
READY_TIMEOUT_S = 2.0


@router.get("/livez", response_model=Health)
async def livez() -> Health:
    """The process and its event loop answer (never a database check)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health, "description": "Not ready"}})
async def readyz(request: Request, response: Response) -> Health:
    """A connection from the pool runs a statement within two seconds."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            async with request.app.state.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means not ready; the reason is not the caller's business
        response.status_code = 503
        return Health(status="unavailable")
    return Health(status="ok")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
