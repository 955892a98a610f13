"""No message content, SQL parameters or credentials in any log line, at any level."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid

import pytest
from yarl import URL

from tests.support.amqp import Gateway, queue_depth
from tests.support.config import make_settings
from tests.support.db import create_user, tokens_used
from tests.support.events import message_created
from tests.support.services import _rabbitmqctl
from tests.support.waiting import eventually
from worker.logs import configure_logging
from worker.runtime.app import start_worker, stop_worker

SECRET_CONTENT = "patient record 7f3e-confidential"
DB_PASSWORD = f"db-pw-{uuid.uuid4().hex[:8]}"
AMQP_PASSWORD = f"amqp-pw-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def amqp_user(amqp_url):
    """A broker user with a unique password in this test's vhost."""
    user = f"logsafety-{uuid.uuid4().hex[:8]}"
    vhost = URL(amqp_url).path.lstrip("/")
    await asyncio.to_thread(_rabbitmqctl, "add_user", user, AMQP_PASSWORD)
    await asyncio.to_thread(_rabbitmqctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    yield str(URL(amqp_url).with_user(user).with_password(AMQP_PASSWORD))
    await asyncio.to_thread(_rabbitmqctl, "delete_user", user)


async def test_debug_logs_hold_no_content_parameters_or_credentials(db, database_url, amqp_url, amqp_user, capfd) -> None:
    # Trust authentication ignores the password, so it can ride along in the URL unnoticed.
    url_with_password = str(URL(database_url).with_password(DB_PASSWORD))
    settings = make_settings(url_with_password, amqp_user, log_level="DEBUG", log_format="json")
    configure_logging(settings)
    try:
        running = await start_worker(settings)
        try:
            user_id = await create_user(db)
            ghost = uuid.uuid4()
            async with Gateway(amqp_url) as gateway:
                await gateway.publish(message_created(user_id, content=SECRET_CONTENT, prompt_tokens=3))
                await gateway.publish(message_created(user_id, content=SECRET_CONTENT + "\x00"))  # invalid_event
                await gateway.publish(message_created(ghost, content=SECRET_CONTENT))  # unknown_user, retried
                await gateway.publish(message_created(user_id, content=SECRET_CONTENT, prompt_tokens="7"))
            await eventually(lambda: _done(db, user_id, amqp_url))
        finally:
            await stop_worker(running, settings)
    finally:
        configure_logging(make_settings(database_url, amqp_url))
        logging.getLogger().setLevel(logging.WARNING)
    out, err = capfd.readouterr()
    logs = out + err
    assert re.search(r'"event": ?"event"', logs), "the per-event lines were captured"
    for secret in ("confidential", DB_PASSWORD, AMQP_PASSWORD):
        assert secret not in logs


async def _done(db, user_id, amqp_url) -> bool:
    # 3 + 5 tokens applied; the NUL, the string integer and (after its retries) the ghost dead-lettered.
    return await tokens_used(db, user_id) == 8 and await queue_depth(amqp_url, "llm.events.worker.dlq") == 3
