"""Connections to RabbitMQ: the URL the worker uses, and what counts as the broker not being there."""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

from worker.broker import frames
from worker.settings import Settings


def amqp_url(settings: Settings, connection_name: str) -> str:
    """The broker URL with a connection name and the heartbeat, unless the URL sets them."""
    url = URL(settings.amqp_url)
    extra = {"name": connection_name, "heartbeat": str(settings.heartbeat_s)}
    return str(url.update_query({k: v for k, v in extra.items() if k not in url.query}))


async def connect_broker(settings: Settings, connection_name: str) -> AbstractRobustConnection:
    """A robust connection; with the fast path, its frames (and its reconnects') are read in bulk."""
    if settings.amqp_fast_path:
        frames.install()
    return await aio_pika.connect_robust(amqp_url(settings, connection_name))


def broker_unreachable(error: BaseException) -> str | None:
    """Why a first connection failed when the broker is down or refusing (worth waiting for), else None.

    Only the exception's class: its text may carry the URL, credentials included.
    """
    if isinstance(error, AMQPConnectionError | ConnectionError | OSError | asyncio.TimeoutError):
        return type(error).__name__
    if isinstance(error, StopAsyncIteration):
        # aiormq's frame reader met the end of the stream: the peer closed during the handshake.
        return "connection closed during the handshake"
    return None
