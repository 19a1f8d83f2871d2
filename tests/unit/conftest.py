"""Helpers for the deterministic unit tests: every timer runs on pytest-trio's `autojump_clock`."""

from __future__ import annotations

from typing import Any

import pytest
import trio

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
