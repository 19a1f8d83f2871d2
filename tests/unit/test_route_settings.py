"""`--route` as a flag, a variable and in the TOML file, and what bad routes are told."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay import ConfigError
from relay.daemon.run import _sink
from relay.daemon.settings import load_routes, load_settings
from relay.sinks.routing import RoutingSink

from .test_settings import parse

SECRET_URL = "nats://relay:hunter2@127.0.0.1:4222?subject=x.{topic}"


def test_repeated_flags_keep_their_order_and_sink_is_the_catch_all() -> None:
    settings = load_settings(
        parse(
            "--route",
            "orders.*=http://127.0.0.1:9/o",
            "--route",
            "pay.>=stdout",
            "--sink",
            "stdout",
        ),
        {},
    )
    assert [spec.pattern.text for spec in settings.route] == ["orders.*", "pay.>"]
    sink = _sink(settings)
    assert isinstance(sink, RoutingSink)
    assert [r.pattern for r in sink.statistics()] == ["orders.*", "pay.>", ">"]


def test_routes_from_the_file_and_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text('route = ["orders.*=stdout", ">=http://127.0.0.1:9/rest"]\n')
    settings = load_settings(parse("--config", str(file)), {})
    assert [spec.url for spec in settings.route] == ["stdout", "http://127.0.0.1:9/rest"]
    env = {"RELAY_ROUTE": "a.*=stdout\n >=stdout"}
    assert [s.pattern.text for s in load_settings(parse(), env).route] == ["a.*", ">"]


def test_without_routes_the_sink_stays_a_plain_sink() -> None:
    assert not isinstance(_sink(load_settings(parse(), {})), RoutingSink)


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--route", "orders.*=stdout"], "no catch-all"),
        (["--route", ""], "expected PATTERN=URL"),
        (["--route", "=stdout", "--sink", "stdout"], "empty topic pattern"),
        (["--route", "orders.*", "--sink", "stdout"], "expected PATTERN=URL"),
        (["--route", "a=stdout", "--route", "a=stdout", "--sink", "stdout"], "given twice"),
        (["--route", ">=stdout", "--sink", "stdout"], "two catch-alls"),
        (["--route", f"a {SECRET_URL}", "--sink", "stdout"], "holds a URL"),
        (["--route", f"orders.*{SECRET_URL}", "--sink", "stdout"], "holds a URL"),
        (["--route", f"orders.x{SECRET_URL}", "--sink", "stdout"], "holds a URL"),
        (["--route", f"a b={SECRET_URL}", "--sink", "stdout"], "space"),
    ],
)
def test_bad_route_flags_are_refused_without_a_password(argv: list[str], why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        load_settings(parse(*argv), {})
    assert caught.value.field == "route"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("toml", "why"),
    [
        ('route = "orders.*"\nsink = "stdout"\n', "expected PATTERN=URL"),
        ("route = [1]\n", "must be a string, got 1"),
        ("route = {a = 'stdout'}\n", "must be a list of strings, got a dict"),
        ('route = ["a=stdout", ""]\nsink = "stdout"\n', "expected PATTERN=URL"),
    ],
)
def test_bad_routes_in_the_file_name_the_file(tmp_path: Path, toml: str, why: str) -> None:
    file = tmp_path / "relay.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=why) as caught:
        load_settings(parse("--config", str(file)), {})
    assert str(file) in str(caught.value)


def test_a_bad_sink_url_in_a_route_is_refused_without_its_password() -> None:
    settings = load_settings(
        parse("--route", "a=nats://relay:hunter2@127.0.0.1:4222?subject=", "--sink", "stdout"),
        {},
    )
    with pytest.raises(ConfigError) as caught:
        _sink(settings)
    assert "hunter2" not in str(caught.value)


def test_status_reads_the_routes_with_passwords_masked() -> None:
    routes = load_routes(parse("--route", f"a.*={SECRET_URL}", "--sink", "stdout"), {})
    assert routes == (("a.*", routes[0][1]), (">", "stdout"))
    assert "hunter2" not in routes[0][1]
    assert load_routes(parse(), {}) == ()
