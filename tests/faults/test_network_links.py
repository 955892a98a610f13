"""Fault 5: the worker's TCP links, first to the database then to the broker, are stalled and then cut."""

from __future__ import annotations

import random

from sqlalchemy.engine import make_url
from yarl import URL

from tests.faults.scenario import fault_settings, mixed_events
from tests.support.db import create_users
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

EVENTS = 1200


async def test_a_stalled_then_cut_database_link_pauses_the_worker_and_loses_nothing(
    db, database_url, amqp_url, proxies, new_scenario
) -> None:
    target = make_url(database_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    proxies.append(proxy)
    through_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    # A short client deadline: a black-holed link must be noticed in seconds, not minutes.
    settings = fault_settings(through_proxy, amqp_url, db_command_timeout_s=2)
    scenario = await new_scenario(db, database_url, amqp_url, settings)
    users = await create_users(db, 8)
    scenario.spawn()
    # Each fault, then its end: the worker must notice the outage and resume by itself.
    faults = [(250, proxy.stall, proxy.resume, "stalled (black hole)", "resumed"),
              (700, proxy.cut, proxy.heal, "cut (every connection reset, new ones refused)", "healed")]
    async with scenario.streaming(mixed_events(users, EVENTS, random.Random(6)), per_second=100):
        for outages, (threshold, break_link, mend_link, broken, mended) in enumerate(faults, start=1):
            await scenario.wait_applied(threshold)
            break_link()
            scenario.fault(f"database link {broken} after {threshold} applied")
            await scenario.wait_logged("outage_started", outages)
            mend_link()
            await scenario.wait_logged("outage_ended", outages)
            scenario.recover(f"database link {mended}")
    finished = await scenario.finish(settle_timeout=60, workers=1, applied=EVENTS,
                                     notes=[f"proxy connections: {proxy.connections_seen}"])
    assert finished.outcomes["dead_lettered"] == 0, finished.outcomes


async def test_a_stalled_then_cut_broker_link_is_reconnected_and_loses_nothing(
    db, database_url, amqp_url, proxies, new_scenario
) -> None:
    target = URL(amqp_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5672).start()
    proxies.append(proxy)
    # Heartbeats every 2 s: a black-holed broker link is declared dead within a few seconds.
    settings = fault_settings(database_url, str(target.with_port(proxy.port)), heartbeat_s=2, consumer_watchdog_s=60)
    scenario = await new_scenario(db, database_url, amqp_url, settings)
    users = await create_users(db, 8)
    scenario.spawn()
    await scenario.wait_consumers(1, timeout=30)
    async with scenario.streaming(mixed_events(users, EVENTS, random.Random(7)), per_second=100):
        await scenario.wait_applied(250)
        seen_before = proxy.connections_seen
        proxy.stall()
        scenario.fault("broker link stalled (black hole) after 250 applied")
        # The broker drops the silent connection (its consumer goes) and the worker dials again.
        await scenario.wait_consumers(0)
        await eventually(lambda: _true(proxy.connections_seen > seen_before), timeout=60)
        proxy.resume()
        scenario.recover("broker link resumed")
        await scenario.wait_consumers(1, interval=0.3)

        await scenario.wait_applied(700)
        seen_before = proxy.connections_seen
        proxy.cut()
        scenario.fault("broker link cut (every connection reset, new ones refused) after 700 applied")
        await scenario.wait_consumers(0, timeout=30)
        await eventually(lambda: _true(proxy.connections_seen > seen_before), timeout=60)
        proxy.heal()
        scenario.recover("broker link healed")
        await scenario.wait_consumers(1, interval=0.3)
    finished = await scenario.finish(settle_timeout=60, workers=1, applied=EVENTS,
                                     notes=[f"proxy connections: {proxy.connections_seen}"])
    assert finished.outcomes["dead_lettered"] == 0, finished.outcomes


async def _true(value: bool) -> bool:
    return value
