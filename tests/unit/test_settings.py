"""Where `relay run` takes its options from, and what it says about bad ones."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from relay import ConfigError
from relay.daemon.settings import (
    RUN_OPTIONS,
    Option,
    add_run_options,
    load_database,
    load_settings,
    unknown_variables,
)


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


NUMERIC = [option for option in RUN_OPTIONS if option.kind in (int, float)]


@pytest.mark.parametrize("option", NUMERIC, ids=lambda option: option.name)
@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "-1", "1e999", "99999999999999999999", ""])
def test_every_number_is_finite_and_in_range_from_a_flag_or_a_variable(
    option: Option, raw: str
) -> None:
    for argv, env in [([f"{option.flag}={raw}"], {}), ([], {option.env: raw})]:
        with pytest.raises(ConfigError) as caught:
            load_settings(parse(*argv), env)
        assert caught.value.field in (option.name, option.name.rpartition("_")[0])
        assert len(str(caught.value)) < 200


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "1e300", "100001"])
def test_numbers_in_the_file_are_checked_as_well(tmp_path: Path, value: str) -> None:
    file = tmp_path / "relay.toml"
    file.write_text(f"batch_size = {value}\npoll_interval = {value}\n")
    with pytest.raises(ConfigError, match=r"batch_size|poll_interval"):
        load_settings(parse("--config", str(file)), {})


def test_a_file_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_bytes(b"batch_size = 5\nsink = '\xff\xfe'\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_settings(parse("--config", str(file)), {})


def test_an_unknown_toml_option_gets_the_nearest_name(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text("batchsize = 5\n")
    with pytest.raises(
        ConfigError, match=r"batchsize: unknown option .* \(did you mean batch_size\?\)"
    ):
        load_settings(parse("--config", str(file)), {})


def test_a_misspelt_relay_variable_gets_a_warning_with_the_nearest_name() -> None:
    env = {"RELAY_BATCHSIZE": "5", "RELAY_DSN": "x", "RELAY_TEST_DSN": "y", "RELAY_ZZZ": "1"}
    assert unknown_variables(env) == [
        "RELAY_BATCHSIZE is not a relay variable and is ignored (did you mean RELAY_BATCH_SIZE?)",
        "RELAY_ZZZ is not a relay variable and is ignored",
    ]


def admin(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    for name in ("--dsn", "--schema"):
        parser.add_argument(name)
    parser.add_argument("--config", type=Path)
    return parser.parse_args(argv)


def test_admin_commands_read_dsn_and_schema_from_the_file_and_flags_win(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text('dsn = "host=filed"\nschema = "filed"\nbatch_size = 5\n')
    filed = load_database(admin("--config", str(file)), {})
    assert (filed.config.dsn, filed.config.schema, filed.dsn_given) == ("host=filed", "filed", True)
    flagged = load_database(admin("--config", str(file), "--dsn", "host=f", "--schema", "f"), {})
    assert (flagged.config.dsn, flagged.config.schema) == ("host=f", "f")
    env = load_database(
        admin("--config", str(file)), {"RELAY_SCHEMA": "env", "RELAY_DSN": "host=e"}
    )
    assert (env.config.dsn, env.config.schema) == ("host=e", "env")


@pytest.mark.parametrize(
    ("env", "given"),
    [
        ({}, False),
        ({"PGDATABASE": "app"}, True),
        ({"PGHOST": "db"}, True),
        ({"PGSERVICE": "s"}, True),
    ],
)
def test_libpq_variables_count_as_a_dsn_source(env: dict[str, str], given: bool) -> None:
    assert load_database(admin("--dsn", ""), env).dsn_given is given
