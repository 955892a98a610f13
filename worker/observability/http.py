"""HTTP endpoint: /livez, /readyz and /metrics (Prometheus text format)."""

from __future__ import annotations

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.observability.health import Health
from worker.observability.metrics import Metrics


def build_app(health: Health, metrics: Metrics) -> web.Application:
    async def livez(request: web.Request) -> web.Response:
        ok, checks = health.live()
        return _status(ok, checks)

    async def readyz(request: web.Request) -> web.Response:
        ok, checks = health.ready()
        metrics.ready.set(1 if ok else 0)
        return _status(ok, checks)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        metrics.ready.set(1 if health.ready()[0] else 0)
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


def _status(ok: bool, checks: dict[str, bool]) -> web.Response:
    return web.Response(
        status=200 if ok else 503,
        body=orjson.dumps({"status": "ok" if ok else "unavailable", "checks": checks}),
        content_type="application/json",
    )


async def serve(app: web.Application, port: int, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104 - a pod's probe port
    """Start serving; the caller cleans up the returned runner."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
