"""Bad input, family by family: each ends as exit 2 and one clear line, never a secret.

Every case plants a password (in the DSN, a sink URL or the webhook secret) and checks that it
is printed nowhere. Cases that fail while parsing run in-process through `relay.cli.main`
(a few milliseconds each: the matrix is large); one case of each family, and every case that
opens a connection or a sink, runs as a subprocess (`python -m relay.cli`), as a user runs it.
No case waits for a server: connections go to a closed loopback port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs
import psycopg
import pytest

from relay import NewEvent, cli, enqueue_many
from relay.daemon import run as daemon_run
from relay.daemon.settings import RUN_OPTIONS

from .cli_runs import assert_one_clear_line, relay

SECRET = "Zq9xK7planted"
DSN = f"postgresql://postgres:{SECRET}@127.0.0.1:1/db?connect_timeout=2"
NUMERIC = [option for option in RUN_OPTIONS if option.kind in (int, float)]
ZERO_IS_VALID = {"restart_intensity", "grace_period"}
NOT_NUMBERS = ["", "-1", "inf", "-inf", "nan", "1e999", "99999999999999999999", "5x", "1,5"]


@attrs.frozen
class Case:
    args: Sequence[str]
    env: Mapping[str, str] = attrs.field(factory=dict)
    file: bytes | None = None  # written to relay.toml; "{file}" in args is its path
    secret: str = SECRET
    code: int | tuple[int, ...] = 2  # 69: the database was not reached within --wait


def _numeric_cases() -> Iterator[object]:
    for option in NUMERIC:
        values = NOT_NUMBERS + ([] if option.name in ZERO_IS_VALID else ["0"])
        for value in values:
            flag = Case(["run", "--dsn", DSN, f"{option.flag}={value}"])
            yield pytest.param(flag, id=f"flag-{option.name}-{value or 'empty'}")
            variable = Case(["run"], {"RELAY_DSN": DSN, option.env: value})
            yield pytest.param(variable, id=f"env-{option.name}-{value or 'empty'}")


TOML_CASES = {
    "unknown-key": b"batchsize = 5\n",
    "wrong-type-int": b'batch_size = "lots"\n',
    "wrong-type-bool": b"poll_interval = true\n",
    "wrong-type-dsn": b"dsn = 5\n",
    "toml-inf": b"poll_interval = inf\n",
    "toml-nan": b"delivery_timeout = nan\n",
    "toml-huge": b"batch_size = 9223372036854775807\n",
    "not-utf8": b"sink = '\xff\xfe'\n",
    "not-toml": b"batch_size = = 5\n",
    "a-table": b"[relay]\nbatch_size = 5\n",
    "bad-schema": b'schema = "a b"\n',
}

SCHEMAS = {"empty": "", "too-long": "s" * 64, "quote": 'a"b', "quote1": "a'b", "space": "a b"}
SCHEMAS |= {"semicolon": "a;drop", "dash": "a-b", "digit-first": "1abc"}


def _other_cases() -> Iterator[object]:
    for name, text in TOML_CASES.items():
        for command in (["run", "--dsn", DSN], ["status", "--dsn", DSN]):
            yield pytest.param(
                Case([*command, "--config", "{file}"], file=text), id=f"toml-{command[0]}-{name}"
            )
    for name, schema in SCHEMAS.items():
        yield pytest.param(Case(["status", "--dsn", DSN, "--schema", schema]), id=f"schema-{name}")
        yield pytest.param(
            Case(["run"], {"RELAY_DSN": DSN, "RELAY_SCHEMA": schema}), id=f"env-schema-{name}"
        )
    yield pytest.param(Case(["run", "--dsn", DSN, "--log-level", "loud"]), id="flag-log-level")
    yield pytest.param(Case(["run", "--dsn", DSN, "--metrics-addr", "host:99999"]), id="flag-addr")
    yield pytest.param(Case(["run", "--config", "/nonexistent/relay.toml"]), id="toml-missing")
    for flag in ("--older-than", "--id", "--limit"):
        for value in ("", "-1", "inf", "nan", "99999999999999999999d", "x", "7"):
            if value == "7" and flag != "--older-than":
                continue  # a fine id or limit: only a duration needs a unit
            args = ["dead", "list", "--dsn", DSN, f"{flag}={value}"]
            yield pytest.param(Case(args), id=f"dead{flag}-{value or 'empty'}")
    for value in ("0", "-1", "inf", "nan", "1e999", "x"):
        yield pytest.param(Case(["demo", f"--rate={value}"]), id=f"demo-rate-{value}")
        yield pytest.param(Case(["demo", f"--duration={value}"]), id=f"demo-duration-{value}")
    for argv in (["dead", "--dsn", DSN], ["migrate", "--dns", DSN], [DSN], ["status", DSN]):
        yield pytest.param(Case(argv), id=f"argv-{argv[0][:8]}-{len(argv)}")
    yield pytest.param(Case(["migrate", "--webhook-secret", SECRET]), id="argv-webhook-secret")
    yield pytest.param(Case(["dead", "purge", "--dsn", DSN]), id="purge-without-scope")
    yield pytest.param(Case(["migrate", "--dsn", ""]), id="migrate-empty-dsn")


@pytest.mark.parametrize("case", [*_numeric_cases(), *_other_cases()])
def test_bad_input_is_one_line_and_exit_2(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in list(os.environ):
        if name.startswith(("RELAY_", "PG")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)

    def started(*_: object) -> None:
        raise AssertionError("relay run started: the input should have failed while parsing")

    monkeypatch.setattr(daemon_run, "run_daemon", started)
    assert cli.main(_args(case, tmp_path)) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("relay: ")
    assert case.secret not in captured.err


def _args(case: Case, tmp_path: Path) -> list[str]:
    if case.file is not None:
        (tmp_path / "relay.toml").write_bytes(case.file)
    return [arg.replace("{file}", str(tmp_path / "relay.toml")) for arg in case.args]


# Subprocesses: one of each family above, and every case that gets as far as a connection or a
# sink (they cannot run in-process: `relay run` sets up logging for the whole process).
DELIMITERS = ["/", "@", "?", "#", ":", "%", " ", "'", '"', "&", "=", "\\"]
SUBPROCESS_CASES = {
    "flag-number": Case(["run", "--dsn", DSN, "--batch-size", "99999999999999999999"]),
    "flag-inf": Case(["run", "--dsn", DSN, "--delivery-timeout", "inf"]),
    "env-nan": Case(["run"], {"RELAY_DSN": DSN, "RELAY_GRACE_PERIOD": "nan"}),
    "toml-not-utf8": Case(["run", "--dsn", DSN, "--config", "{file}"], file=b"x = '\xff'\n"),
    "toml-unknown": Case(["status", "--dsn", DSN, "--config", "{file}"], file=b"dsnn = 'x'\n"),
    "schema": Case(["status", "--dsn", DSN, "--schema", 'x"; drop']),
    "argv-echo": Case(["migrate", "--dns", DSN]),
    "older-than-huge": Case(["dead", "purge", "--dsn", DSN, "--older-than", "999999999999d"]),
    "dsn-malformed": Case(["status", "--dsn", f"postgresql://u:{SECRET}@127.0.0.1:notaport/db"]),
    "dsn-conninfo-unterminated": Case(["status", "--dsn", f"host=127.0.0.1 password='{SECRET}"]),
    "dsn-unreachable": Case(["status", "--wait", "0", "--dsn", DSN], code=69),
    "dsn-unreachable-env": Case(["migrate", "--wait", "0"], {"DATABASE_URL": DSN}, code=69),
    "dsn-from-toml": Case(
        ["status", "--wait", "0", "--config", "{file}"], file=f"dsn = '{DSN}'\n".encode(), code=69
    ),
    "dsn-empty": Case(["dead", "retry", "--all", "--dsn", ""]),
    "sink-unknown-scheme": Case(["run", "--dsn", DSN, "--sink", f"ftp://u:{SECRET}@host/x"]),
    "sink-bad-port": Case(["run", "--dsn", DSN, "--sink", f"nats://u:{SECRET}@host:99999"]),
    "sink-not-a-url": Case(["run", "--dsn", DSN, "--sink", "nowhere"]),
    "sink-python-missing": Case(["run", "--dsn", DSN, "--sink", "python:no_such_module:f"]),
}
for _d in DELIMITERS:
    _password = f"pw{_d}{SECRET}"
    # Depending on the delimiter libpq reads a malformed DSN (2) or a closed port (69).
    SUBPROCESS_CASES[f"dsn-password-{_d!r}"] = Case(
        ["status", "--wait", "0", "--dsn", f"postgresql://postgres:{_password}@127.0.0.1:1/db"],
        secret=SECRET,
        code=(2, 69),
    )
    SUBPROCESS_CASES[f"sink-password-{_d!r}"] = Case(
        ["run", "--dsn", DSN, "--sink", f"amqp://guest:{_password}@127.0.0.1:99999/"],
        secret=SECRET,
    )


@pytest.mark.parametrize("case", SUBPROCESS_CASES.values(), ids=SUBPROCESS_CASES.keys())
def test_bad_input_as_a_user_meets_it(case: Case, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "PG"))}
    env.pop("DATABASE_URL", None)
    result = relay(*_args(case, tmp_path), env={**env, "HOME": str(tmp_path), **case.env})
    assert_one_clear_line(result, secret=case.secret, code=case.code)


# What a writer hands `relay.enqueue`: each bad payload, header, topic or key is refused with an
# error naming the event, before anything reaches the server, and nothing is written.
BAD_EVENTS = {
    "payload-object": (NewEvent("t", {"when": object()}), TypeError),
    "payload-bytes": (NewEvent("t", b"\xff"), TypeError),
    "payload-set": (NewEvent("t", {1, 2}), TypeError),
    "payload-nan": (NewEvent("t", float("nan")), ValueError),
    "payload-inf": (NewEvent("t", [float("-inf")]), ValueError),
    "payload-nul": (NewEvent("t", {"s": "a\x00b"}), ValueError),
    "payload-nul-key": (NewEvent("t", {"a\x00": 1}), ValueError),
    "payload-surrogate": (
        NewEvent("t", {"s": b"\xff".decode(errors="surrogateescape")}),
        ValueError,
    ),
    "headers-list": (NewEvent("t", {}, headers=[1, 2]), TypeError),  # type: ignore[arg-type]
    "headers-str": (NewEvent("t", {}, headers="traceparent"), TypeError),  # type: ignore[arg-type]
    "headers-value": (NewEvent("t", {}, headers={"h": {1}}), TypeError),
    "headers-nul": (NewEvent("t", {}, headers={"h": "\x00"}), ValueError),
    "topic-empty": (NewEvent("", {}), ValueError),
    "topic-nul": (NewEvent("t\x00", {}), ValueError),
    "topic-not-str": (NewEvent(5, {}), ValueError),  # type: ignore[arg-type]
    "key-nul": (NewEvent("t", {}, key="k\x00"), ValueError),
    "key-not-str": (NewEvent("t", {}, key=5), ValueError),  # type: ignore[arg-type]
}


@pytest.mark.parametrize(("event", "error"), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_a_bad_event_is_refused_naming_it_and_nothing_is_written(
    database_dsn: str, event: NewEvent, error: type[Exception]
) -> None:
    with psycopg.connect(database_dsn) as conn:
        with pytest.raises(error, match=r"^event 1\b") as caught:
            enqueue_many(conn, [NewEvent("fine", 1), event])
        assert "\n" not in str(caught.value)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM relay.outbox").fetchone() == (0,)
