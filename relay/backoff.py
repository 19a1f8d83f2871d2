"""Capped exponential backoff with jitter, as an immutable policy.

The policy computes delays; the caller sleeps (or schedules a row).
"""

from __future__ import annotations

import math
import random

import attrs

# A retry is scheduled as `now() + delay` in PostgreSQL: a month is far longer than any useful
# wait, and inf or nan there would fail every retry.
_LONGEST = 30 * 86400.0


def _finite(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value > _LONGEST:
        raise ValueError(f"'{attribute.name}' must be finite and <= {_LONGEST:g}: {value!r}")


@attrs.frozen
class Backoff:
    """`delay(n)` is `min(cap, base * factor**n)`, scaled down by up to `jitter` of itself.

    Attributes:
        base: the first delay, in seconds.
        cap: no delay is longer than this.
        factor: growth per attempt.
        jitter: the fraction of each delay that is random (0 = exact, 1 = "full jitter").
    """

    base: float = attrs.field(default=1.0, validator=[attrs.validators.gt(0.0), _finite])
    cap: float = attrs.field(default=300.0, validator=[attrs.validators.gt(0.0), _finite])
    factor: float = attrs.field(default=2.0, validator=[attrs.validators.gt(0.0), _finite])
    jitter: float = attrs.field(
        default=0.1,
        validator=attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0)),
    )

    def ceiling(self, attempt: int) -> float:
        """The delay before attempt `attempt + 1` without jitter (`attempt` counts from 0)."""
        try:
            grown = self.base * self.factor**attempt
        except OverflowError:  # only a factor above 1 overflows, and then far past any cap
            return self.cap
        return min(self.cap, grown)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before attempt `attempt + 1`, jitter included."""
        ceiling = self.ceiling(attempt)
        if not self.jitter:
            return ceiling
        draw = (rng or random).random()
        return ceiling * (1.0 - self.jitter * draw)
