"""LiteLLM offline: the bundled model cost map, no network; a capturing logger beside the callback."""

from __future__ import annotations

import asyncio
import os

# Before LiteLLM is imported anywhere: read the cost map shipped in the package, fetch nothing.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import litellm  # noqa: E402
import pytest  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

MODEL_LIST = [{"model_name": "gpt-test", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-offline"}}]


@dataclass
class Call:
    kwargs: dict[str, Any]
    response: Any
    start_time: Any
    end_time: Any

    @property
    def tokens(self) -> int:
        logged = self.kwargs["standard_logging_object"]
        return logged["prompt_tokens"] + logged["completion_tokens"]


class Capture(CustomLogger):
    """Records what LiteLLM hands its success and failure hooks, to compare the worker's rows with."""

    def __init__(self) -> None:
        super().__init__()
        self.successes: list[Call] = []
        self.failures = 0

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:
        self.successes.append(Call(kwargs, response_obj, start_time, end_time))

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time) -> None:
        self.failures += 1

    async def settled(self, successes: int, failures: int = 0, timeout: float = 60) -> None:
        """Wait until LiteLLM ran the hooks (it runs them in the background, after the call returned)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.successes) < successes or self.failures < failures:
            assert asyncio.get_running_loop().time() < deadline, (len(self.successes), self.failures)
            await asyncio.sleep(0.05)


@pytest.fixture
def router() -> litellm.Router:
    return litellm.Router(model_list=MODEL_LIST, num_retries=0)


@pytest.fixture
def callbacks() -> Iterator[list]:
    """`litellm.callbacks` for one test, empty before and after.

    LiteLLM copies `callbacks` into its per-event lists once and then skips a second logger
    of the same class: every list is reset, or a new test's logger would never be called.
    """
    litellm.logging_callback_manager._reset_all_callbacks()
    yield litellm.callbacks
    litellm.logging_callback_manager._reset_all_callbacks()


@pytest.fixture
def capture(callbacks: list) -> Capture:
    """A `Capture` installed as a LiteLLM callback for this test."""
    logger = Capture()
    callbacks.append(logger)
    return logger
