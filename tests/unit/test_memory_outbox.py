"""`relay.testing.MemoryOutbox` has the PostgreSQL outbox's semantics."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from relay import OutboxEvent, OutboxUnavailable
from relay.ports import Retry
from relay.testing import MemoryOutbox


def ids(events: Sequence[OutboxEvent]) -> list[int]:
    return [event.id for event in events]


async def test_enqueue_gives_increasing_ids() -> None:
    outbox = MemoryOutbox()
    assert [outbox.enqueue("t", n) for n in range(3)] == [1, 2, 3]
    assert [event.payload for event in outbox.pending()] == [0, 1, 2]


async def test_a_claim_hands_out_the_oldest_events_up_to_the_limit() -> None:
    outbox = MemoryOutbox()
    for n in range(5):
        outbox.enqueue("t", n)
    async with outbox.claim(3) as batch:
        assert ids(batch.events) == [1, 2, 3]


async def test_two_open_claims_skip_each_others_events() -> None:
    outbox = MemoryOutbox()
    for n in range(5):
        outbox.enqueue("t", n)
    async with outbox.claim(2) as first, outbox.claim(2) as second:
        assert ids(first.events) == [1, 2]
        assert ids(second.events) == [3, 4]
        assert outbox.statistics().open_claims == 2


async def test_leaving_a_claim_without_settling_puts_every_event_back_untouched() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)
    before = outbox.pending_rows()
    async with outbox.claim(10) as batch:
        assert ids(batch.events) == [1]
    assert outbox.pending_rows() == before
    async with outbox.claim(10) as again:
        assert ids(again.events) == [1]


async def test_an_error_in_the_claim_block_rolls_back() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)
    with pytest.raises(ValueError):
        async with outbox.claim(10):
            raise ValueError
    assert ids(outbox.pending()) == [1]
    assert outbox.statistics().open_claims == 0


async def test_settled_events_not_named_are_deleted() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)
    async with outbox.claim(10) as batch:
        await batch.settle(retry={}, bury={})
    assert outbox.pending() == []


async def test_a_retry_counts_the_attempt_and_waits_for_its_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    event_id = outbox.enqueue("t", 1)
    async with outbox.claim(10) as batch:
        await batch.settle(retry={event_id: Retry(delay=1.5, reason="nope")}, bury={})
    [row] = outbox.pending_rows()
    assert (row.event.attempts, row.available_at, row.last_error) == (1, 1.5, "nope")
    async with outbox.claim(10) as early:
        assert (early.events, early.next_due) == ((), 1.5)
    await trio.sleep(1.5)
    async with outbox.claim(10) as due:
        assert (ids(due.events), due.next_due) == ([event_id], None)


async def test_a_key_waiting_for_a_retry_holds_back_its_later_events_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    a1 = outbox.enqueue("t", 1, key="A")
    async with outbox.claim(1) as batch:
        await batch.settle(retry={a1: Retry(delay=1.0, reason="nope")}, bury={})
    a2 = outbox.enqueue("t", 2, key="A")
    b1 = outbox.enqueue("t", 3, key="B")
    none = outbox.enqueue("t", 4)
    async with outbox.claim(10) as batch:
        assert ids(batch.events) == [b1, none]
    await trio.sleep(1.0)
    async with outbox.claim(10) as batch:
        assert ids(batch.events) == [a1, a2, b1, none]


async def test_bury_moves_the_event_to_the_dead_table_with_its_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    event_id = outbox.enqueue("t", 1)
    await trio.sleep(2.0)
    async with outbox.claim(10) as batch:
        await batch.settle(retry={}, bury={event_id: "poison"})
    [dead] = outbox.dead()
    assert (dead.event.id, dead.event.attempts, dead.reason, dead.failed_at) == (
        event_id,
        1,
        "poison",
        2.0,
    )
    assert outbox.pending() == []


async def test_hold_puts_the_event_back_unchanged() -> None:
    outbox = MemoryOutbox()
    event_id = outbox.enqueue("t", 1, key="A")
    before = outbox.pending_rows()
    async with outbox.claim(10) as batch:
        await batch.settle(retry={}, bury={}, hold=[event_id])
    assert outbox.pending_rows() == before


async def test_settle_refuses_ids_outside_the_batch_and_a_second_settle() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)
    async with outbox.claim(10) as batch:
        with pytest.raises(ValueError):
            await batch.settle(retry={}, bury={99: "?"})
        await batch.settle(retry={}, bury={})
        with pytest.raises(RuntimeError):
            await batch.settle(retry={}, bury={})


async def test_fail_next_claim_fails_exactly_the_next_n_claims() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)
    outbox.fail_next_claim(2)
    for _ in range(2):
        with pytest.raises(OutboxUnavailable, match="claim: injected failure"):
            async with outbox.claim(10):
                pass  # pragma: no cover
    async with outbox.claim(10) as batch:
        assert ids(batch.events) == [1]
    assert outbox.statistics().claims == 3


async def test_an_injected_error_is_raised_as_given_not_in_a_group() -> None:
    outbox, refused = MemoryOutbox(), ConnectionRefusedError("refused")
    outbox.fail_next_claim(error=refused)
    with pytest.raises(ConnectionRefusedError) as raised:
        async with outbox.claim(10):
            pass  # pragma: no cover
    assert raised.value is refused


async def test_a_failed_settle_rolls_the_claim_back() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)
    outbox.fail_next_settle(error=KeyError("boom"))
    with pytest.raises(KeyError):
        async with outbox.claim(10) as batch:
            await batch.settle(retry={}, bury={})
    assert ids(outbox.pending()) == [1]
    async with outbox.claim(10) as batch:
        await batch.settle(retry={}, bury={})
    assert outbox.pending() == []


async def test_hang_next_claim_hangs_until_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    outbox.hang_next_claim()
    with trio.move_on_after(7.0) as scope:
        async with outbox.claim(10):
            pass  # pragma: no cover
    assert scope.cancelled_caught
    assert trio.current_time() == 7.0
    async with outbox.claim(10) as batch:
        assert batch.events == ()


async def test_a_hung_settle_leaves_the_rows_pending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)
    outbox.hang_next_settle()
    with trio.move_on_after(3.0) as scope:
        async with outbox.claim(10) as batch:
            await batch.settle(retry={}, bury={})
    assert scope.cancelled_caught
    assert ids(outbox.pending()) == [1]
    assert outbox.statistics().open_claims == 0


async def test_a_hung_listen_is_a_connect_that_never_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    outbox.hang_next_listen()
    with trio.move_on_after(2.0) as scope:
        async with outbox.listen():
            pass  # pragma: no cover
    assert scope.cancelled_caught
    assert outbox.statistics().listening == 0
    async with outbox.listen():
        assert outbox.statistics().listening == 1


async def test_faults_of_one_operation_are_used_in_the_order_given(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    outbox.fail_next_claim()
    outbox.hang_next_claim()
    with pytest.raises(OutboxUnavailable):
        async with outbox.claim(10):
            pass  # pragma: no cover
    with trio.move_on_after(1.0) as scope:
        async with outbox.claim(10):
            pass  # pragma: no cover
    assert scope.cancelled_caught
    async with outbox.claim(10):
        pass


async def test_faults_of_one_operation_leave_the_others_alone() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)
    outbox.fail_next_listen()
    async with outbox.claim(10) as batch:
        await batch.settle(retry={}, bury={})
    with pytest.raises(OutboxUnavailable, match="listen"):
        async with outbox.listen():
            pass  # pragma: no cover


async def test_enqueue_notifies_every_listener_once(autojump_clock: trio.testing.MockClock) -> None:
    outbox = MemoryOutbox()
    async with outbox.listen() as first, outbox.listen() as second:
        outbox.enqueue("t", 1)
        outbox.enqueue("t", 2)
        for notifications in (first, second):
            with trio.move_on_after(1.0) as scope:
                await anext(notifications)
                await anext(notifications)
            assert not scope.cancelled_caught
        assert outbox.statistics().listening == 2
    assert outbox.statistics().listening == 0


async def test_dropped_listeners_end_their_iterators_and_lose_what_was_buffered() -> None:
    outbox = MemoryOutbox()
    async with outbox.listen() as notifications:
        outbox.enqueue("t", 1)
        outbox.drop_listeners()
        assert [n async for n in notifications] == []


async def test_silenced_listeners_hear_nothing_but_a_new_connection_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    async with outbox.listen() as silenced:
        outbox.silence_listeners()
        outbox.enqueue("t", 1)
        with trio.move_on_after(1.0):
            await anext(silenced)
            pytest.fail("a silenced listener heard a notification")
        async with outbox.listen() as fresh:
            outbox.enqueue("t", 2)
            with trio.move_on_after(1.0) as scope:
                await anext(fresh)
            assert not scope.cancelled_caught


async def test_a_failing_listen_is_a_connect_error_and_every_attempt_is_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    outbox.fail_next_listen()
    with pytest.raises(OutboxUnavailable):
        async with outbox.listen():
            pass  # pragma: no cover
    await trio.sleep(0.5)
    async with outbox.listen():
        pass
    assert outbox.statistics().listen_attempts == (0.0, 0.5)


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_fault_injection_refuses_a_count_that_is_not_a_positive_int(n: object) -> None:
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        MemoryOutbox().fail_next_claim(n)  # type: ignore[arg-type]


def test_fault_injection_refuses_an_exception_class_for_an_instance() -> None:
    with pytest.raises(TypeError, match="exception instance"):
        MemoryOutbox().fail_next_settle(error=KeyError)  # type: ignore[arg-type]


async def test_a_claim_with_a_byte_limit_takes_the_oldest_that_fit_and_an_oversize_one_alone() -> (
    None
):
    outbox = MemoryOutbox()
    big, small = "x" * 1000, "y" * 100  # 1002 and 102 bytes of JSON, plus "{}" headers
    for payload in (small, small, big, small):
        outbox.enqueue("t", payload)
    async with outbox.claim(10, max_bytes=250) as batch:
        assert ids(batch.events) == [1, 2]
        assert batch.contended  # cut by bytes: a short batch does not mean drained
        await batch.settle(retry={}, bury={})
    async with outbox.claim(10, max_bytes=250) as batch:
        assert ids(batch.events) == [3]  # larger than the limit: alone
        await batch.settle(retry={}, bury={})
    async with outbox.claim(10, max_bytes=250) as batch:
        assert ids(batch.events) == [4]
        assert not batch.contended
