"""Which errors are outages, what a try's log line says, and how long a one-shot command waits."""

from __future__ import annotations

import errno
import logging

import psycopg
import pytest
import trio

from relay import Backoff, Config, DsnRejected, OutboxUnavailable, OutboxUnreachable, Unreachable
from relay.outages import Outages, Waiter, call_reaching, is_outage
from relay.postgres.connect import cause, map_psycopg_errors

CONFIG = Config(dsn="postgresql://me:s3cret@db.example:5432/app")


def mapped(error: Exception) -> OutboxUnavailable:
    with pytest.raises(OutboxUnavailable) as caught, map_psycopg_errors(CONFIG, "listen"):
        raise error
    return caught.value


def test_out_of_file_descriptors_is_an_outage_that_names_its_cause() -> None:
    """psycopg says "no error details available" when libpq's message is empty: the OS error
    behind it is the cause the log shows."""
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as exc:
            raise psycopg.OperationalError("no error details available") from exc
    except psycopg.OperationalError as exc:
        error = mapped(exc)
    assert isinstance(error, OutboxUnreachable)
    assert str(error) == "listen failed at db.example:5432/app: Too many open files"
    assert cause(OSError(errno.EMFILE, "Too many open files")) == "Too many open files"


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (
            'connection failed: connection to server at "10.0.0.1", port 5432 failed:'
            " Connection refused\n\tIs the server running on that host?",
            "connection refused",
        ),
        (
            'connection failed: connection to server at "10.0.0.1", port 5432 failed:'
            " FATAL:  the database system is starting up",
            "the database system is starting up",
        ),
        ("server closed the connection unexpectedly", "server closed the connection unexpectedly"),
    ],
)
def test_a_server_not_reachable_now_is_an_outage(message: str, why: str) -> None:
    error = mapped(psycopg.OperationalError(message))
    assert isinstance(error, OutboxUnreachable) and is_outage(error)
    assert str(error) == f"listen failed at db.example:5432/app: {why}"


@pytest.mark.parametrize(
    "message",
    [
        'connection to server at "h", port 5432 failed: FATAL:  password authentication failed'
        ' for user "me"',
        'connection to server at "h", port 5432 failed: FATAL:  database "app" does not exist',
        'connection to server at "h", port 5432 failed: FATAL:  role "me" does not exist',
        "received invalid response to SSL negotiation: H",
    ],
)
def test_a_dsn_that_can_never_work_is_a_configuration_error_not_an_outage(message: str) -> None:
    error = mapped(psycopg.OperationalError(message))
    assert isinstance(error, DsnRejected) and not is_outage(error)
    assert "s3cret" not in str(error)


def test_a_statement_the_server_rejects_is_not_an_outage() -> None:
    error = mapped(psycopg.errors.UndefinedColumn('column "headers" does not exist'))
    assert not isinstance(error, OutboxUnreachable) and not is_outage(error)


async def test_a_one_shot_waits_exactly_its_patience_then_raises_unreachable(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    outages = Outages()
    waiter = Waiter("status", "database", Backoff(base=1.0, cap=4.0, jitter=0.0), outages)
    tries: list[float] = []

    async def refused() -> None:
        tries.append(trio.current_time())
        raise OutboxUnreachable("status failed at db:5432/app: connection refused")

    with caplog.at_level(logging.WARNING, "relay.outages"), pytest.raises(Unreachable) as caught:
        await call_reaching(refused, waiter, patience=10.0)
    assert tries == [0.0, 1.0, 3.0, 7.0, 10.0]  # backoff 1, 2, 4, then cut at the deadline
    assert str(caught.value) == (
        "database not reachable within 10s: status failed at db:5432/app: connection refused"
    )
    assert caplog.records[0].getMessage() == (
        "status: database unavailable (try 1): status failed at db:5432/app: connection refused;"
        " trying again in 1s"
    )
    assert outages.current() == {}
