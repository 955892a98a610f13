"""`worker api`: serve the HTTP API with uvicorn (uvloop, httptools) until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator

from worker.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("api", help="serve the HTTP API on WORKER_API_PORT until SIGTERM or SIGINT")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")  # noqa: S104
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from worker.api.app import MissingAdminToken, create_app

    try:
        app = create_app(settings)
    except MissingAdminToken as exc:
        print(f"error: the API needs an administrator token: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=settings.api_port,
        loop="uvloop" if settings.event_loop == "uvloop" else "asyncio",
        http="httptools",
        lifespan="on",
        # The API writes its own access log (worker.api.middleware.AccessLog) through structlog.
        access_log=False,
        log_config=None,
        server_header=False,
        # SIGTERM: stop accepting, let requests in flight finish within the worker's shutdown budget.
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = _server_class(uvicorn.Server)(config)
    server.run()
    return 0 if server.started else 1


def _server_class(base: type) -> type:
    class GracefulServer(base):  # type: ignore[misc, valid-type]
        """uvicorn's server, except that a drained SIGTERM/SIGINT ends with exit status 0, like `worker run`."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after draining (exit status -15); a planned stop is a success.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer
