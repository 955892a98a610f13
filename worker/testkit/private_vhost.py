"""A private RabbitMQ vhost, created and deleted through the management API (milliseconds, not a
`rabbitmqctl` process per call)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import quote, unquote

import aiohttp
from yarl import URL

from worker.broker.management import auth_headers
from worker.settings import Settings

NAME_PREFIX = "aiworker_"


class VhostError(Exception):
    """The management API refused or could not be reached."""


@dataclass(frozen=True)
class PrivateVhost:
    """A vhost of one bench run's or one test's own, on the broker the settings name."""

    name: str
    management_url: str
    amqp_url: str
    user: str

    @classmethod
    def beside(cls, settings: Settings, purpose: str = "bench") -> PrivateVhost:
        return cls.named(settings, f"{NAME_PREFIX}{purpose}_{uuid.uuid4().hex[:10]}")

    @classmethod
    def named(cls, settings: Settings, name: str) -> PrivateVhost:
        amqp = URL(settings.amqp_url)
        user = unquote(amqp.raw_user or "guest")
        # The vhost is a single path segment; quote it so a name could never add one.
        amqp_url = str(amqp.with_path("/" + quote(name, safe=""), encoded=True).with_query(amqp.query))
        return cls(name, settings.amqp_management_url, amqp_url, user)

    async def create(self) -> None:
        """PUT the vhost and give the AMQP user every permission on it."""
        await self._request("PUT", f"vhosts/{quote(self.name, safe='')}", {})
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        await self._request("PUT", f"permissions/{quote(self.name, safe='')}/{quote(self.user, safe='')}", permissions)

    async def delete(self) -> None:
        """DELETE the vhost with everything in it (no error when it is already gone)."""
        await self._request("DELETE", f"vhosts/{quote(self.name, safe='')}", None)

    async def _request(self, method: str, path: str, body: object) -> None:
        base = URL(self.management_url)
        headers = auth_headers(base)
        url = URL(str(base.origin()) + base.raw_path.rstrip("/") + "/api/" + path, encoded=True)
        try:
            async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.request(method, url, json=body) as response:
                    if response.status >= 400 and not (method == "DELETE" and response.status == 404):
                        raise VhostError(f"management API answered {response.status} to {method} /api/{path}")
        except aiohttp.ClientError as exc:
            raise VhostError(f"management API unreachable ({type(exc).__name__}) for {method} /api/{path}") from exc
