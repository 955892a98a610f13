"""What start-up waits out (a dependency not there yet) and what it raises at once."""

from __future__ import annotations

import pytest
from aiormq.exceptions import AMQPConnectionError, ProbableAuthenticationError

from worker.broker.connection import broker_unreachable
from worker.runtime.startup import until_reachable


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError(), ConnectionResetError(), AMQPConnectionError("x"), StopAsyncIteration(),
     TimeoutError(), ProbableAuthenticationError("x")],
)
def test_a_broker_that_refuses_resets_or_hangs_up_is_worth_waiting_for(error: BaseException) -> None:
    assert broker_unreachable(error) is not None


def test_a_bug_is_not_mistaken_for_an_unreachable_broker() -> None:
    assert broker_unreachable(TypeError("bug")) is None


async def test_until_reachable_retries_with_growing_pauses_then_returns_the_result() -> None:
    failures = [ConnectionRefusedError(), ConnectionRefusedError()]

    async def attempt() -> str:
        if failures:
            raise failures.pop()
        return "up"

    assert await until_reachable("broker", attempt, broker_unreachable, first_delay_s=0.01) == "up"


async def test_until_reachable_raises_what_waiting_cannot_fix_at_once() -> None:
    async def attempt() -> None:
        raise TypeError("bug")

    with pytest.raises(TypeError):
        await until_reachable("broker", attempt, broker_unreachable, first_delay_s=0.01)
