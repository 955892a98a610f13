"""Fault 5: the worker's TCP links, first to the database then to the broker, are stalled and then cut."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy.engine import make_url
from yarl import URL

from tests.faults.scenario import (
    applied_at_least,
    assert_clean,
    fault_settings,
    log_excerpt,
    logged,
    mixed_events,
    outcomes,
    publish_stream,
)
from tests.support.db import create_user
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

EVENTS = 1200


async def test_a_stalled_then_cut_database_link_pauses_the_worker_and_loses_nothing(
    db, database_url, amqp_url, proxies, fleet, scenario_factory
) -> None:
    target = make_url(database_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    proxies.append(proxy)
    through_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    # A short client deadline: a black-holed link must be noticed in seconds, not minutes.
    settings = fault_settings(through_proxy, amqp_url, db_command_timeout_s=2)
    scenario = scenario_factory(db, database_url, amqp_url, settings)
    await scenario.declare_topology()
    checker = scenario.checker
    users = [await create_user(db) for _ in range(8)]
    workers = [fleet.spawn(settings)]
    events = mixed_events(users, EVENTS, random.Random(6))
    async with scenario.publisher() as publisher, scenario.faulting():
        stream = asyncio.ensure_future(publish_stream(publisher, events, per_second=100))
        try:
            await eventually(lambda: applied_at_least(checker, 250), timeout=60, interval=0.05)
            proxy.stall()
            scenario.fault("database link stalled (black hole) after 250 applied")
            await eventually(lambda: _logged_at_least(workers, "outage_started", 1), timeout=30)
            proxy.resume()
            await eventually(lambda: _logged_at_least(workers, "outage_ended", 1), timeout=30)
            scenario.recover("database link resumed")

            await eventually(lambda: applied_at_least(checker, 700), timeout=60, interval=0.05)
            proxy.cut()
            scenario.fault("database link cut (every connection reset, new ones refused) after 700 applied")
            await eventually(lambda: _logged_at_least(workers, "outage_started", 2), timeout=30)
            proxy.heal()
            await eventually(lambda: _logged_at_least(workers, "outage_ended", 2), timeout=30)
            scenario.recover("database link healed")
            assert await stream == EVENTS
        finally:
            stream.cancel()
    settled = await scenario.settle(timeout=60)
    codes = await fleet.terminate_all()
    seen = outcomes(workers)
    report = await scenario.report(notes=[f"outcomes: {dict(seen)}", f"proxy connections: {proxy.connections_seen}"])
    assert settled, log_excerpt(workers)
    assert codes == [0]
    assert seen["dead_lettered"] == 0, seen
    assert report.applied == EVENTS
    assert_clean(report)


async def test_a_stalled_then_cut_broker_link_is_reconnected_and_loses_nothing(
    db, database_url, amqp_url, proxies, fleet, scenario_factory
) -> None:
    target = URL(amqp_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5672).start()
    proxies.append(proxy)
    # Heartbeats every 2 s: a black-holed broker link is declared dead within a few seconds.
    settings = fault_settings(database_url, str(target.with_port(proxy.port)), heartbeat_s=2, consumer_watchdog_s=60)
    scenario = scenario_factory(db, database_url, amqp_url, settings)
    await scenario.declare_topology()
    checker = scenario.checker
    users = [await create_user(db) for _ in range(8)]
    workers = [fleet.spawn(settings)]
    await eventually(lambda: _consumers(checker, 1), timeout=30)
    events = mixed_events(users, EVENTS, random.Random(7))
    async with scenario.publisher() as publisher, scenario.faulting():
        stream = asyncio.ensure_future(publish_stream(publisher, events, per_second=100))
        try:
            await eventually(lambda: applied_at_least(checker, 250), timeout=60, interval=0.05)
            seen_before = proxy.connections_seen
            proxy.stall()
            scenario.fault("broker link stalled (black hole) after 250 applied")
            # The broker drops the silent connection (its consumer goes) and the worker dials again.
            await eventually(lambda: _consumers(checker, 0), timeout=60)
            await eventually(lambda: _true(proxy.connections_seen > seen_before), timeout=60)
            proxy.resume()
            scenario.recover("broker link resumed")
            await eventually(lambda: _consumers(checker, 1), timeout=60, interval=0.3)

            await eventually(lambda: applied_at_least(checker, 700), timeout=60, interval=0.05)
            seen_before = proxy.connections_seen
            proxy.cut()
            scenario.fault("broker link cut (every connection reset, new ones refused) after 700 applied")
            await eventually(lambda: _consumers(checker, 0), timeout=30)
            await eventually(lambda: _true(proxy.connections_seen > seen_before), timeout=60)
            proxy.heal()
            scenario.recover("broker link healed")
            await eventually(lambda: _consumers(checker, 1), timeout=60, interval=0.3)
            assert await stream == EVENTS
        finally:
            stream.cancel()
    settled = await scenario.settle(timeout=60)
    alive = len(fleet.running)
    codes = await fleet.terminate_all()
    seen = outcomes(workers)
    report = await scenario.report(notes=[f"outcomes: {dict(seen)}", f"proxy connections: {proxy.connections_seen}"])
    assert settled, log_excerpt(workers)
    assert alive == 1 and codes == [0], (codes, log_excerpt(workers))
    assert seen["dead_lettered"] == 0, seen
    assert report.applied == EVENTS
    assert_clean(report)


async def _logged_at_least(workers, event: str, count: int) -> bool:
    return logged(workers, event) >= count


async def _consumers(checker, count: int) -> bool:
    return await checker.consumers() == count


async def _true(value: bool) -> bool:
    return value
