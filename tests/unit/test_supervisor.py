"""The one_for_one supervisor: restart kinds, backoff, intensity, cancellation."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
import trio

from relay import Backoff, RestartIntensityExceeded, SinkUnavailable
from relay.supervisor import ChildSpec, Restart, RestartPolicy, Supervisor

from .conftest import make_config

POLICY = RestartPolicy(intensity=10, period=60.0, backoff=Backoff(base=0.25, cap=4.0, jitter=0.0))

Child = Callable[..., Awaitable[None]]


def child(
    starts: list[float], *, then: str = "crash", runs_for: float = 0.0, fails_before_start: int = 0
) -> Child:
    """A child that records each start time, runs a while, then crashes or returns."""

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(trio.current_time())
        if len(starts) <= fails_before_start:
            raise ValueError(f"could not start ({len(starts)})")
        task_status.started()
        await trio.sleep(runs_for)
        if then == "crash":
            raise ValueError(f"crash {len(starts)}")
        if then == "forever":
            await trio.sleep_forever()

    return run


async def test_a_crashing_permanent_child_is_restarted_after_capped_exponential_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    supervisor = Supervisor([ChildSpec("c", child(starts))], POLICY)
    with trio.move_on_after(12.0):
        await supervisor.run()
    assert starts == [0.0, 0.25, 0.75, 1.75, 3.75, 7.75, 11.75]
    assert supervisor.statistics().restarts == 7  # the last one is waiting out its backoff


async def test_a_permanent_child_that_returns_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    with trio.move_on_after(1.0):
        await Supervisor([ChildSpec("c", child(starts, then="return"))], POLICY).run()
    assert starts == [0.0, 0.25, 0.75]


async def test_a_transient_child_is_restarted_after_a_crash_but_not_after_returning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    crashes_once = child(starts, then="return", fails_before_start=1)
    supervisor = Supervisor([ChildSpec("c", crashes_once, Restart.TRANSIENT)], POLICY)
    await supervisor.run()  # returns: no child left
    assert starts == [0.0, 0.25]
    assert trio.current_time() == 0.25


async def test_a_temporary_child_is_never_restarted(autojump_clock: trio.testing.MockClock) -> None:
    crashed: list[float] = []
    returned: list[float] = []
    supervisor = Supervisor(
        [
            ChildSpec("crashes", child(crashed), Restart.TEMPORARY),
            ChildSpec("returns", child(returned, then="return"), Restart.TEMPORARY),
        ],
        POLICY,
    )
    await supervisor.run()
    assert (crashed, returned) == ([0.0], [0.0])
    assert supervisor.statistics().restarts == 0


async def test_children_start_in_order_and_the_supervisor_is_up_when_the_last_one_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first: list[float] = []
    second: list[float] = []

    def slow_start(starts: list[float], delay: float) -> Child:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            starts.append(trio.current_time())
            await trio.sleep(delay)
            task_status.started()
            await trio.sleep_forever()

        return run

    supervisor = Supervisor(
        [ChildSpec("a", slow_start(first, 1.0)), ChildSpec("b", slow_start(second, 2.0))], POLICY
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert trio.current_time() == 3.0
        nursery.cancel_scope.cancel()
    assert (first, second) == ([0.0], [1.0])


async def test_a_child_failing_to_start_is_restarted_and_the_supervisor_waits_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    supervisor = Supervisor(
        [ChildSpec("c", child(starts, then="forever", fails_before_start=2))], POLICY
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert trio.current_time() == 0.75
        nursery.cancel_scope.cancel()
    assert starts == [0.0, 0.25, 0.75]
    assert supervisor.statistics().restarts_by_child == {"c": 2}


async def test_one_restart_too_many_raises_restart_intensity_exceeded_and_stops_every_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    stopped: list[float] = []

    async def bystander(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            stopped.append(trio.current_time())

    policy = RestartPolicy(intensity=2, period=60.0, backoff=POLICY.backoff)
    supervisor = Supervisor(
        [ChildSpec("bystander", bystander), ChildSpec("crasher", child(starts))], policy
    )
    with pytest.raises(RestartIntensityExceeded) as caught:
        await supervisor.run()
    assert starts == [0.0, 0.25, 0.75]  # two restarts allowed, the third crash gives up
    assert stopped == [0.75]
    assert str(caught.value) == "more than 2 restarts within 60.0s (last: crasher crashed)"
    assert isinstance(caught.value.__cause__, ValueError)
    assert str(caught.value.__cause__) == "crash 3"
    assert supervisor.statistics().restarts == 2


async def test_giving_up_while_starting_raises_from_nursery_start_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    policy = RestartPolicy(intensity=0, period=60.0, backoff=POLICY.backoff)
    supervisor = Supervisor([ChildSpec("c", child(starts, fails_before_start=5))], policy)
    async with trio.open_nursery() as nursery:
        with pytest.raises(RestartIntensityExceeded):
            await nursery.start(supervisor.run)
    assert starts == [0.0]


async def test_giving_up_on_a_child_that_returned_says_so_and_has_no_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = RestartPolicy(intensity=1, period=60.0, backoff=POLICY.backoff)
    supervisor = Supervisor([ChildSpec("quitter", child([], then="return"))], policy)
    with pytest.raises(RestartIntensityExceeded) as caught:
        await supervisor.run()
    assert str(caught.value) == "more than 1 restarts within 60.0s (last: quitter returned)"
    assert caught.value.__cause__ is None


async def test_restarts_older_than_the_period_are_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    policy = RestartPolicy(intensity=1, period=1.0, backoff=POLICY.backoff)
    with trio.move_on_after(5.0):
        await Supervisor([ChildSpec("c", child(starts, runs_for=1.0))], policy).run()
    # Each crash comes a second after the last restart: never two in one period, and the
    # backoff starts again from its base.
    assert starts == [0.0, 1.25, 2.5, 3.75]


async def test_cancellation_passes_through_and_is_never_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    supervisor = Supervisor([ChildSpec("c", child(starts, then="forever"))], POLICY)
    with trio.move_on_after(1.0) as scope:
        await supervisor.run()
    assert scope.cancelled_caught
    assert starts == [0.0]
    assert supervisor.statistics().restarts == 0


async def test_cancellation_during_a_restart_backoff_is_not_delayed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    with trio.move_on_after(0.5):
        await Supervisor([ChildSpec("c", child(starts, runs_for=0.3))], POLICY).run()
    assert trio.current_time() == 0.5
    assert starts == [0.0]


async def test_an_error_raised_while_stopping_is_not_a_crash(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def messy(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    supervisor = Supervisor([ChildSpec("messy", messy)], POLICY)
    with trio.move_on_after(1.0) as scope:
        await supervisor.run()
    assert scope.cancelled_caught
    assert supervisor.statistics().restarts == 0
    [logged] = [r for r in caplog.records if r.name == "relay.supervisor"]
    assert logged.getMessage() == "messy failed while stopping"  # not lost: logged, with it
    assert logged.exc_info is not None and str(logged.exc_info[1]) == "cleanup failed"


def test_a_restart_policy_refuses_a_negative_intensity() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(intensity=-1)


async def test_relays_own_errors_are_logged_in_one_line_others_with_their_traceback(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def lost(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        raise SinkUnavailable("broker gone")

    async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        raise ValueError("a bug")

    supervisor = Supervisor([ChildSpec("sink", lost), ChildSpec("bug", broken)], POLICY)
    with trio.move_on_after(0.1):
        await supervisor.run()
    [expected] = [r for r in caplog.records if r.getMessage().startswith("sink")]
    [unexpected] = [r for r in caplog.records if r.getMessage().startswith("bug")]
    assert expected.getMessage() == "sink crashed: broker gone; restarting it in 0.25s"
    assert expected.exc_info is None
    assert unexpected.getMessage() == "bug crashed; restarting it in 0.25s"
    assert unexpected.exc_info is not None


class FixedRandom(random.Random):
    """Draws `value` every time, so a jittered delay is exact."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    "restart, ends",
    [(Restart.TRANSIENT, "returns"), (Restart.TEMPORARY, "crashes")],
)
async def test_a_child_that_ends_for_good_before_starting_does_not_hold_up_the_supervisor(
    autojump_clock: trio.testing.MockClock, restart: Restart, ends: str
) -> None:
    async def ends_at_once(*, task_status: trio.TaskStatus[None]) -> None:
        if ends == "crashes":
            raise ValueError("crashed before starting")

    later: list[float] = []
    supervisor = Supervisor(
        [
            ChildSpec("early", ends_at_once, restart),
            ChildSpec("later", child(later, then="forever")),
        ],
        POLICY,
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(1.0):  # the supervisor must start, not wait for "early" for ever
            await nursery.start(supervisor.run)
        assert later == [0.0]
        nursery.cancel_scope.cancel()
    assert supervisor.statistics().restarts == 0


async def test_a_restart_exactly_one_period_old_is_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    policy = RestartPolicy(intensity=1, period=1.0, backoff=POLICY.backoff)
    with trio.move_on_after(2.5):
        # Crashes at 0.75 (restart counted then) and at 1.75, exactly a period later.
        await Supervisor([ChildSpec("c", child(starts, runs_for=0.75))], policy).run()
    assert starts == [0.0, 1.0, 2.0]


def test_a_policy_from_config_takes_every_restart_setting() -> None:
    backoff = Backoff(base=2.0, cap=16.0, jitter=0.5)
    config = make_config(restart_intensity=3, restart_period=7.0, restart_backoff=backoff)
    assert RestartPolicy.from_config(config) == RestartPolicy(3, 7.0, backoff)


async def test_restart_jitter_comes_from_the_injected_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    policy = RestartPolicy(backoff=Backoff(base=1.0, cap=8.0, jitter=0.5))
    supervisor = Supervisor([ChildSpec("c", child(starts))], policy, rng=FixedRandom(0.5))
    with trio.move_on_after(2.0):
        await supervisor.run()
    assert starts == [0.0, 0.75]  # 1.0 scaled down by 0.5 * 0.5
