"""A small async client of the RabbitMQ management HTTP API, scoped to the worker's vhost."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

import aiohttp
from yarl import URL

from worker.settings import Settings

DEFAULT_VHOST = "/"


class ManagementError(Exception):
    """The management API could not be reached or refused a request."""

    def __init__(self, message: str, *, reached: bool = True) -> None:
        super().__init__(message)
        self.reached = reached
        """False when no answer came at all (down, refused, timed out): worth waiting for."""


def vhost_of(amqp_url: str) -> str:
    """The vhost an AMQP URL names in its path (`/` when the path is empty)."""
    raw_path = URL(amqp_url).raw_path
    name = raw_path[1:] if raw_path.startswith("/") else raw_path
    return unquote(name) if name else DEFAULT_VHOST


def auth_headers(management_url: str | URL) -> dict[str, str]:
    """The Basic authorization header for the credentials in a management URL (none without a user).

    Credentials travel as a header only; a URL kept for errors or logs has none.
    """
    url = URL(management_url)
    if not url.raw_user:
        return {}
    return {"Authorization": aiohttp.encode_basic_auth(unquote(url.raw_user), unquote(url.raw_password or ""))}


class ManagementClient:
    """HTTP calls on one vhost; use as `async with ManagementClient.from_settings(s) as api:`."""

    def __init__(self, management_url: str, vhost: str, timeout_s: float = 10.0) -> None:
        url = URL(management_url)
        self._headers = auth_headers(url)
        self._base = str(url.origin()) + url.raw_path.rstrip("/") + "/api"
        self._vhost = quote(vhost, safe="")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.vhost = vhost

    @classmethod
    def from_settings(cls, settings: Settings) -> ManagementClient:
        return cls(settings.amqp_management_url, vhost_of(settings.amqp_url))

    async def __aenter__(self) -> ManagementClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_queue(self, name: str) -> dict[str, Any] | None:
        """The queue's management record, or None when it does not exist."""
        return await self._request("GET", "queues", name)

    async def get_policy(self, name: str) -> dict[str, Any] | None:
        """The policy's record, or None when it is not defined."""
        return await self._request("GET", "policies", name)

    async def put_policy(self, name: str, body: dict[str, Any]) -> None:
        """Create or replace a policy (idempotent)."""
        await self._request("PUT", "policies", name, body)

    async def delete_policy(self, name: str) -> None:
        """Remove a policy; no error when it is not defined."""
        await self._request("DELETE", "policies", name)

    async def _request(self, method: str, collection: str, name: str | None = None, body: Any = None) -> Any:
        if self._session is None:
            raise RuntimeError("ManagementClient is used outside `async with`")
        path = f"/{collection}" if name is None else f"/{collection}/{self._vhost}/{quote(name, safe='')}"
        try:
            # encoded=True: the vhost `/` must stay `%2F`, not become a path separator.
            async with self._session.request(method, URL(self._base + path, encoded=True), json=body) as response:
                if response.status == 404:
                    return None
                if response.status >= 400:
                    raise ManagementError(f"management API answered {response.status} to {method} {path}")
                if response.status == 204 or response.content_length == 0:
                    return None
                return await response.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise ManagementError(
                f"management API unreachable ({type(exc).__name__}) for {method} {path}", reached=False
            ) from exc
        except TimeoutError as exc:
            raise ManagementError(f"management API timed out for {method} {path}", reached=False) from exc
