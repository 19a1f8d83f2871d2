"""`relay run`'s CloudEvents and signature options: flag, variable and file, and bad values."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from relay import ConfigError
from relay.daemon.run import _sink
from relay.daemon.settings import add_run_options, load_settings
from relay.sinks.cloudevents import CloudEvents

SECRET = "whsec_c2VjcmV0IGtleSBieXRlcw=="


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    add_run_options(parser)
    return parser.parse_args(argv)


def test_relay_format_and_relay_signature_by_default() -> None:
    settings = load_settings(parse(), {})
    assert (settings.sink_format, settings.webhook_signature) == ("relay", "relay")
    assert settings.cloudevents_source == "/relay"


def test_the_options_come_from_a_flag_a_variable_or_the_file(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text(
        'sink = "nats://127.0.0.1:4222"\nsink_format = "cloudevents"\n'
        'cloudevents_source = "/relay/shop"\nwebhook_signature = "standard-webhooks"\n'
        f'webhook_secret = "{SECRET}"\n'
    )
    settings = load_settings(parse("--config", str(file)), {})
    assert _sink(settings).options.cloudevents == CloudEvents(source="/relay/shop")  # type: ignore[attr-defined]
    env = {"RELAY_SINK_FORMAT": "cloudevents-structured"}
    assert load_settings(parse("--config", str(file)), env).sink_format == "cloudevents-structured"
    flags = parse("--config", str(file), "--sink-format", "relay", "--cloudevents-source", "urn:x")
    assert (
        load_settings(flags, env).sink_format,
        load_settings(flags, env).cloudevents_source,
    ) == (
        "relay",
        "urn:x",
    )


@pytest.mark.parametrize(
    ("argv", "field", "reason"),
    [
        (["--sink-format", "cloudevent"], "sink_format", "must be one of relay, cloudevents"),
        (["--sink-format", ""], "sink_format", "must be one of"),
        (["--cloudevents-source", ""], "cloudevents_source", "non-empty URI-reference"),
        (["--cloudevents-source", "/a b"], "cloudevents_source", "must be a URI-reference"),
        (["--cloudevents-source", "/é" * 500], "cloudevents_source", "must be a URI-reference"),
        (["--webhook-signature", "hmac"], "webhook_signature", "must be one of relay"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_option(
    argv: list[str], field: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(parse(*argv), {})
    assert caught.value.field == field
    assert reason in str(caught.value) and "\n" not in str(caught.value)
    assert len(str(caught.value)) < 200


def test_a_source_in_the_file_is_checked_too(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text('cloudevents_source = "has space"\n')
    with pytest.raises(
        ConfigError, match=r"cloudevents_source: must be a URI-reference.*relay\.toml"
    ):
        load_settings(parse("--config", str(file)), {})


def test_a_standard_webhooks_secret_without_its_prefix_is_refused_unquoted() -> None:
    argv = ["--sink", "http://127.0.0.1:9/x", "--webhook-signature", "standard-webhooks"]
    settings = load_settings(parse(*argv, "--webhook-secret", "plain-old-secret"), {})
    with pytest.raises(
        ConfigError, match=r"webhook_secret: a Standard Webhooks secret starts"
    ) as caught:
        _sink(settings)
    assert "plain-old-secret" not in str(caught.value)


def test_a_good_standard_webhooks_secret_makes_a_webhook() -> None:
    argv = ["--sink", "http://127.0.0.1:9/x", "--webhook-signature", "standard-webhooks"]
    settings = load_settings(parse(*argv, "--webhook-secret", SECRET), {})
    assert _sink(settings).options.signature == "standard-webhooks"  # type: ignore[attr-defined]


def test_cloudevents_for_stdout_is_refused_at_start() -> None:
    settings = load_settings(parse("--sink-format", "cloudevents"), {})
    with pytest.raises(ConfigError, match=r"sink\.format: cloudevents is for the webhook"):
        _sink(settings)
