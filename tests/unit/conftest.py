"""Helpers for the deterministic unit tests: every timer runs on pytest-trio's `autojump_clock`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from relay import Backoff, Config


def make_config(**overrides: Any) -> Config:
    """A config with round, binary-exact times and no jitter, so tests can assert exact times."""
    settings: dict[str, Any] = {
        "batch_size": 10,
        "poll_interval": 5.0,
        "max_attempts": 3,
        "retry_backoff": Backoff(base=1.0, cap=8.0, jitter=0.0),
        "delivery_timeout": 2.0,
        "restart_intensity": 10,
        "restart_period": 60.0,
        "restart_backoff": Backoff(base=0.25, cap=4.0, jitter=0.0),
        "outage_backoff": Backoff(base=0.25, cap=4.0, jitter=0.0),
        "silent_listener_threshold": 3,
    }
    settings.update(overrides)
    return Config(**settings)


def all_tasks() -> set[trio.lowlevel.Task]:
    """Every task of this run, found by walking the task tree from the root."""
    tasks: set[trio.lowlevel.Task] = set()
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is None or task in tasks:
            continue
        tasks.add(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return tasks


@pytest.fixture
def config() -> Config:
    return make_config()


# Every async unit test runs under a deadline, so a broken invariant that leaves a task waiting
# fails with the place it waited rather than hanging the run. On MockClock the deadline is a day of
# virtual time: autojump reaches it at once when nothing else is scheduled, and no test comes
# near it. On the real clock (tests without `autojump_clock`) it is a minute.
VIRTUAL_DEADLINE = 86_400.0
REAL_DEADLINE = 60.0


def _guarded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def run(**kwargs: Any) -> None:
        virtual = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        limit = VIRTUAL_DEADLINE if virtual else REAL_DEADLINE
        try:
            with trio.fail_after(limit):
                await test(**kwargs)
        except trio.TooSlowError as exc:  # its context, Cancelled, shows where the test waited
            kind = "virtual time: every task was blocked" if virtual else "real time"
            raise trio.TooSlowError(f"{test.__name__} hung ({limit:g}s of {kind})") from exc

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and item.path.is_relative_to(here)
            and inspect.iscoroutinefunction(item.obj)
        ):
            item.obj = _guarded(item.obj)
