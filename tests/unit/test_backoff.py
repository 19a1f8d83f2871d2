"""Capped exponential backoff with jitter."""

from __future__ import annotations

import random

import pytest

from relay import Backoff


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_delays_grow_by_the_factor_until_the_cap() -> None:
    backoff = Backoff(base=0.25, factor=2.0, cap=4.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_huge_attempt_count_gives_the_cap() -> None:
    assert Backoff(base=1.0, cap=300.0).ceiling(10_000) == 300.0


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_a_factor_of_at_most_one_never_grows_past_the_base_however_many_attempts(
    factor: float,
) -> None:
    """The delay does not jump to the cap after some attempt count: it was at 65 once."""
    backoff = Backoff(base=1.0, factor=factor, cap=300.0, jitter=0.0)
    assert [backoff.ceiling(n) for n in (64, 65, 10_000)] == [factor**n for n in (64, 65, 10_000)]


def test_the_cap_binds_exactly_where_the_growth_reaches_it() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=8.0, jitter=0.0)
    assert [backoff.ceiling(n) for n in (2, 3, 4)] == [4.0, 8.0, 8.0]


def test_jitter_scales_a_delay_down_by_at_most_its_fraction() -> None:
    backoff = Backoff(base=8.0, cap=100.0, jitter=0.25)
    assert backoff.delay(0, FixedRandom(0.0)) == 8.0
    assert backoff.delay(0, FixedRandom(0.5)) == 7.0
    rng = random.Random(1)
    assert all(6.0 <= backoff.delay(0, rng) <= 8.0 for _ in range(1000))


def test_the_same_seed_gives_the_same_delays() -> None:
    backoff = Backoff(jitter=1.0)
    first = [backoff.delay(n, random.Random(42)) for n in range(5)]
    assert first == [backoff.delay(n, random.Random(42)) for n in range(5)]


@pytest.mark.parametrize("field", ["base", "cap", "factor"])
def test_non_positive_values_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**{field: 0.0})


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
def test_jitter_outside_zero_to_one_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=jitter)


MONTH = 30 * 86400.0


def test_a_month_is_the_longest_delay_accepted() -> None:
    backoff = Backoff(base=MONTH, cap=MONTH, jitter=0.0)
    assert backoff.delay(0) == MONTH


@pytest.mark.parametrize("field", ["base", "cap", "factor"])
@pytest.mark.parametrize("value", [float("inf"), MONTH + 1.0])  # nan fails `gt(0)` first
def test_a_value_longer_than_a_month_or_infinite_is_refused_by_name(
    field: str, value: float
) -> None:
    # the operator reads this message, as the ConfigError of the backoff option
    with pytest.raises(ValueError) as caught:
        Backoff(**{field: value})
    assert str(caught.value) == f"'{field}' must be finite and <= 2.592e+06: {value!r}"
