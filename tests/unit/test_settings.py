"""Where `relay run` takes its options from, and what it says about bad ones."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from relay import ConfigError
from relay.daemon.settings import add_run_options, load_settings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    add_run_options(parser)
    return parser.parse_args(argv)


def test_defaults_need_nothing() -> None:
    settings = load_settings(parse(), {})
    assert settings.sink == "stdout"
    assert settings.config.batch_size == 500
    assert settings.config.dsn == ""


def test_flags_win_over_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text('batch_size = 10\npoll_interval = 2.5\nsink = "stdout"\nschema = "filed"\n')
    env = {"RELAY_BATCH_SIZE": "20", "RELAY_POLL_INTERVAL": "7"}
    settings = load_settings(parse("--config", str(file), "--batch-size", "30"), env)
    assert settings.config.batch_size == 30
    assert settings.config.poll_interval == 7.0
    assert settings.config.schema == "filed"


def test_the_dsn_comes_from_the_flag_then_relay_dsn_then_database_url() -> None:
    env = {"RELAY_DSN": "host=a", "DATABASE_URL": "host=b"}
    assert load_settings(parse("--dsn", "host=c"), env).config.dsn == "host=c"
    assert load_settings(parse(), env).config.dsn == "host=a"
    assert load_settings(parse(), {"DATABASE_URL": "host=b"}).config.dsn == "host=b"


@pytest.mark.parametrize(
    ("argv", "env", "field"),
    [
        (["--batch-size", "many"], {}, "batch_size"),
        (["--batch-size", "0"], {}, "batch_size"),
        (["--poll-interval", "-1"], {}, "poll_interval"),
        ([], {"RELAY_MAX_ATTEMPTS": "1.5"}, "max_attempts"),
        (["--log-level", "loud"], {}, "log_level"),
        (["--metrics-addr", "nohost"], {}, "metrics_addr"),
        (["--schema", "bad name;"], {}, "schema"),
    ],
)
def test_a_bad_value_names_its_option(argv: list[str], env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(parse(*argv), env)
    assert caught.value.field == field


def test_a_bad_toml_value_names_its_option(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text('batch_size = "lots"\n')
    with pytest.raises(ConfigError, match="batch_size: must be an integer") as caught:
        load_settings(parse("--config", str(file)), {})
    assert caught.value.field == "batch_size"


def test_an_unknown_toml_option_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text("batch = 5\n")
    with pytest.raises(ConfigError, match="batch: unknown option"):
        load_settings(parse("--config", str(file)), {})


def test_a_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text("batch_size = = 5\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(parse("--config", str(file)), {})


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(parse("--config", str(tmp_path / "nope.toml")), {})


def test_a_bad_secret_is_never_echoed(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text("webhook_secret = 987654321\n")
    with pytest.raises(ConfigError, match="webhook_secret") as caught:
        load_settings(parse("--config", str(file)), {})
    assert "987654321" not in str(caught.value)


def test_a_negative_grace_period_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(parse("--grace-period", "-1"), {})
    assert caught.value.field == "grace_period"
