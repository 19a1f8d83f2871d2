"""A one_for_one supervisor in Erlang/OTP's vocabulary, on one trio nursery.

Each child runs inside its own wrapper task, which catches the child's crash and restarts it; the
nursery itself only ever sees cancellation. When the restart intensity is exceeded the supervisor
cancels every child and raises `RestartIntensityExceeded` on its own, outside any exception group.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar, cast, overload

import attrs
import trio

from .backoff import Backoff
from .config import Config
from .errors import NotRestartable, RelayError, RestartIntensityExceeded

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A policy made without a Config has a Config's defaults.
_CONFIG = Config()


class Restart(enum.Enum):
    """When a child that ended is started again."""

    PERMANENT = "permanent"  #: always, whether it crashed or returned
    TRANSIENT = "transient"  #: only when it crashed
    TEMPORARY = "temporary"  #: never


class Startable(Protocol):
    """A long-running async function in trio's startable shape."""

    def __call__(self, *, task_status: trio.TaskStatus[None]) -> Awaitable[object]: ...


@attrs.frozen
class ChildSpec:
    """One supervised child.

    Attributes:
        name: for logs and statistics.
        start: called with `task_status` at every (re)start; `task_status.started()` means "up".
        restart: when it is started again after it ends.
    """

    name: str
    start: Startable
    restart: Restart = Restart.PERMANENT


@attrs.frozen
class RestartPolicy:
    """How much restarting a supervisor tolerates, and how fast it restarts.

    Attributes:
        intensity: restarts allowed within `period`, counted across all children; one more and the
            supervisor gives up.
        period: the window, in seconds of trio time.
        backoff: delay before a restart; `n` is how often that child restarted within `period`.
    """

    intensity: int = attrs.field(
        default=_CONFIG.restart_intensity, validator=attrs.validators.ge(0)
    )
    period: float = attrs.field(default=_CONFIG.restart_period, validator=attrs.validators.gt(0))
    backoff: Backoff = _CONFIG.restart_backoff  # a frozen value: one is enough for all

    @classmethod
    def from_config(cls, config: Config) -> RestartPolicy:
        """The policy `config.restart_*` describe."""
        return cls(
            intensity=config.restart_intensity,
            period=config.restart_period,
            backoff=config.restart_backoff,
        )


class StartedOnce(trio.TaskStatus[T], Generic[T]):
    """A task status for a child that may start many times: only the first `started()` counts.

    The first call passes its value to `callback`; later ones (a restarted child starting again)
    are ignored.
    """

    def __init__(self, callback: Callable[[T], object]) -> None:
        self._callback = callback
        self.called = False

    @overload
    def started(self: StartedOnce[None]) -> None: ...

    @overload
    def started(self, value: T) -> None: ...

    def started(self, value: T | None = None) -> None:
        if not self.called:
            self.called = True
            self._callback(cast(T, value))


@attrs.frozen
class SupervisorStatistics:
    """Restarts so far, in total and per child name."""

    restarts: int
    restarts_by_child: Mapping[str, int]


@attrs.define(eq=False)
class Supervisor:
    """Starts `children` in order and restarts each one on its own (one_for_one).

    Restarts are counted across the supervisor; more than `policy.intensity` within
    `policy.period` seconds and it gives up. `trio.Cancelled` always passes through, never counted.
    """

    children: Sequence[ChildSpec]
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    rng: random.Random | None = None
    _recent: deque[tuple[float, str]] = attrs.field(factory=deque)
    _restarts: Counter[str] = attrs.field(factory=Counter)
    _failure: RestartIntensityExceeded | NotRestartable | None = None
    _nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise until every child has ended for good (never, if one is permanent).

        Calls `task_status.started()` once every child has started, in order; a child that fails
        while starting is restarted like any other, and the supervisor waits for it.

        Raises:
            RestartIntensityExceeded: too many restarts; every child has been stopped. Its
                `__cause__` is the last child's error (None if that child returned).
            NotRestartable: a child raised it; every child has been stopped.
        """
        self._failure = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for spec in self.children:
                await nursery.start(self._supervise, spec)
            task_status.started()
        self._nursery = None
        if self._failure is not None:
            raise self._failure

    async def _supervise(self, spec: ChildSpec, *, task_status: trio.TaskStatus[None]) -> None:
        status = StartedOnce[None](lambda _: task_status.started())
        while True:
            error: Exception | None = None
            try:
                await spec.start(task_status=status)
            except Exception as exc:
                error = exc
            if trio.current_effective_deadline() == -math.inf:
                # We are being cancelled: an error raised on the way out is no reason to restart.
                if error is not None:
                    logger.warning("%s failed while stopping", spec.name, exc_info=error)
                await trio.sleep_forever()  # takes the pending cancellation
            if isinstance(error, NotRestartable):
                self._stop(spec, error)
                await trio.sleep_forever()  # takes the cancellation _stop requested
            if error is None and spec.restart is not Restart.PERMANENT:
                logger.info("%s finished", spec.name)
                break
            if error is not None and spec.restart is Restart.TEMPORARY:
                logger.warning("%s crashed; temporary, not restarted", spec.name, exc_info=error)
                break
            delay = self._restart_delay(spec)
            if delay is None:
                self._give_up(spec, error)
                await trio.sleep_forever()  # takes the cancellation _give_up requested
            # relay's own errors say what happened in one line; anything else gets its traceback
            expected = isinstance(error, RelayError)
            logger.warning(
                "%s %s; restarting it in %.3gs",
                spec.name,
                "returned" if error is None else f"crashed: {error}" if expected else "crashed",
                delay,
                exc_info=None if expected else error,
            )
            await trio.sleep(delay)
        status.started()  # a child that ended for good must not hold up the supervisor's start

    def _restart_delay(self, spec: ChildSpec) -> float | None:
        """Count a restart of `spec` and return its backoff; None when that is one too many."""
        now = trio.current_time()
        while self._recent and self._recent[0][0] <= now - self.policy.period:
            self._recent.popleft()
        if len(self._recent) >= self.policy.intensity:
            return None
        recent = sum(1 for _, name in self._recent if name == spec.name)
        self._recent.append((now, spec.name))
        self._restarts[spec.name] += 1
        return self.policy.backoff.delay(recent, self.rng)

    def _give_up(self, spec: ChildSpec, error: Exception | None) -> None:
        what = "crashed" if error is not None else "returned"
        failure = RestartIntensityExceeded(
            f"more than {self.policy.intensity} restarts within {self.policy.period}s "
            f"(last: {spec.name} {what})"
        )
        failure.__cause__ = error
        logger.error("%s; stopping", failure, exc_info=error)
        if self._failure is None:
            self._failure = failure
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def _stop(self, spec: ChildSpec, error: NotRestartable) -> None:
        # Whoever catches it says it in one line: no traceback here.
        logger.debug("%s stopped: %s; stopping", spec.name, error)
        if self._failure is None:
            self._failure = error
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def statistics(self) -> SupervisorStatistics:
        """Restarts so far."""
        return SupervisorStatistics(
            restarts=sum(self._restarts.values()), restarts_by_child=dict(self._restarts)
        )
