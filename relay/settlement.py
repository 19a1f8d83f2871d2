"""How a batch is settled: each failed event's fate, decided so that key order holds."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType

import attrs

from .config import Config
from .ports import OutboxEvent, Retry


@attrs.frozen
class Outcome:
    """How one batch is settled: every claimed event not named here was delivered."""

    retry: Mapping[int, Retry]
    bury: Mapping[int, str]
    hold: frozenset[int]
    defer: Mapping[int, Retry] = MappingProxyType({})


ALL_DELIVERED = Outcome(retry=MappingProxyType({}), bury=MappingProxyType({}), hold=frozenset())


def settle_plan(
    events: Sequence[OutboxEvent],
    failures: Mapping[int, str],
    *,
    config: Config,
    rng: random.Random,
    permanent: Collection[int] = (),
    unavailable: Mapping[int, float] | None = None,
    held: Collection[int] = (),
) -> Outcome:
    """Decide each failed event's fate, keeping key order.

    A failed event whose destination was `unavailable` is deferred by the delay given, no
    attempt counted. Another is buried when the sink said its failure is `permanent` or once it
    has used `config.max_attempts`, else retried after `config.retry_backoff`. Every event after
    the first failure of its key is held, whatever the sink said about it: it was not delivered in
    key order. An event the sink `held` (did not try) is held too, and holds back its key likewise.
    """
    if not failures and not held:
        return ALL_DELIVERED
    unavailable = unavailable or {}
    retry: dict[int, Retry] = {}
    bury: dict[int, str] = {}
    defer: dict[int, Retry] = {}
    hold: set[int] = set()
    failed_keys: set[str] = set()
    for event in events:
        if event.key is not None and event.key in failed_keys:
            hold.add(event.id)
            continue
        if event.id in held:
            hold.add(event.id)
            if event.key is not None:
                failed_keys.add(event.key)
            continue
        reason = failures.get(event.id)
        if reason is None:
            continue
        if event.key is not None:
            failed_keys.add(event.key)
        if event.id in unavailable:
            defer[event.id] = Retry(delay=unavailable[event.id], reason=reason)
        elif event.id in permanent or event.attempts + 1 >= config.max_attempts:
            bury[event.id] = reason
        else:
            retry[event.id] = Retry(
                delay=config.retry_backoff.delay(event.attempts, rng), reason=reason
            )
    return Outcome(retry=retry, bury=bury, hold=frozenset(hold), defer=defer)
