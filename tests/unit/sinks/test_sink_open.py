"""`open_sink` picks the sink by URL; `SinkOptions` rejects bad values with a `ConfigError`."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

from relay import ConfigError
from relay.secrets import find_secrets
from relay.sinks import SinkOptions, StdoutSink, WebhookSink, open_sink


@pytest.mark.parametrize("url", ["stdout", "", "  stdout  "])
def test_stdout_is_the_default_sink(url: str) -> None:
    assert isinstance(open_sink(url), StdoutSink)


def test_open_sink_without_arguments_is_stdout() -> None:
    assert isinstance(open_sink(), StdoutSink)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "https://example.com/events?x=1", "HTTPS://example.com"]
)
def test_http_urls_open_a_webhook_with_the_options(url: str) -> None:
    options = SinkOptions(secret="k", timeout=3, max_concurrency=4)
    sink = open_sink(url, options)
    assert isinstance(sink, WebhookSink)
    assert sink.url == url
    assert sink.options is options


def test_python_urls_load_the_named_callable() -> None:
    sink = open_sink("python:relay.sinks:StdoutSink")
    assert isinstance(sink, StdoutSink)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mqtt://guest:hunter2@broker/", "unknown sink scheme 'mqtt:'"),
        ("file:/tmp/out", "unknown sink scheme 'file:'"),
        ("stdot", "unknown sink 'stdot'"),
        ("http://", "a webhook needs an http:// or https:// URL with a host"),
        ("https://user:hunter2@", "a webhook needs"),
        ("http://exa mple.com/", "not a valid URL"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://[::1", "not a valid URL"),
        ("python:", "expected python:package.module:callable"),
        ("python:no_such_module_for_relay:handler", "cannot import module"),
        ("python:relay.sinks:no_such_sink", "has no attribute 'no_such_sink'"),
    ],
)
def test_a_bad_sink_url_is_a_config_error_on_the_sink_field(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_sink(url)
    assert caught.value.field == "sink"
    assert reason in caught.value.reason
    assert "hunter2" not in str(caught.value)


BROKER_MODULES = ("relay.sinks.nats_jetstream", "relay.sinks.redis_streams", "relay.sinks.rabbitmq")


@pytest.mark.parametrize(
    ("url", "package", "extra"),
    [
        ("nats://127.0.0.1:4222", "nats", "nats"),
        ("redis://127.0.0.1:6379", "redis", "redis"),
        ("amqp://guest:hunter2@127.0.0.1/", "aio_pika", "amqp"),
    ],
)
def test_a_broker_sink_without_its_client_library_names_the_extra_to_install(
    url: str, package: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == package or name.startswith(f"{package}.") or name in BROKER_MODULES:
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    with pytest.raises(ConfigError) as caught:
        open_sink(url)
    assert caught.value.reason == (
        f"{url.split(':')[0]}:// needs the {package} package: pip install 'relay-outbox[{extra}]'"
    )
    assert "hunter2" not in str(caught.value)


def test_a_webhook_repr_hides_the_password_and_the_secrets() -> None:
    sink = open_sink(
        "https://user:hunter2@example.com/hook",
        SinkOptions(secret="s3cret", headers={"Authorization": "Bearer t0ken"}),
    )
    text = repr(sink)
    assert "user:***@example.com" in text
    for secret in ("hunter2", "s3cret", "t0ken"):
        assert secret not in text


def test_sink_options_defaults() -> None:
    options = SinkOptions()
    assert options.secret is None
    assert options.timeout == 10.0
    assert options.max_concurrency == 16
    assert options.headers == ()
    assert options.verify_tls is True
    assert options.ca_file is None


def test_sink_options_take_headers_as_a_mapping_or_pairs() -> None:
    assert SinkOptions(headers={"X-A": "1"}) == SinkOptions(headers=[("X-A", "1")])
    assert SinkOptions(headers={"X-A": "1"}).headers == (("X-A", "1"),)
    assert hash(SinkOptions(headers={"X-A": "1"}))  # a frozen value


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"timeout": 0}, "sink.timeout", "must be a number > 0"),
        ({"timeout": True}, "sink.timeout", "must be a number > 0"),
        ({"max_concurrency": 0}, "sink.max_concurrency", "must be an integer > 0"),
        ({"max_concurrency": 2.5}, "sink.max_concurrency", "must be an integer > 0"),
        ({"secret": ""}, "sink.secret", "non-empty"),
        ({"headers": {"Idempotency-Key": "x"}}, "sink.headers", "set by relay itself"),
        ({"headers": {"content-type": "text/plain"}}, "sink.headers", "set by relay itself"),
        ({"headers": {"Bad Name": "x"}}, "sink.headers", "not a valid header name"),
        ({"headers": {"X-Token": "a\r\nX-Evil: 1"}}, "sink.headers", "one line"),
    ],
)
def test_bad_sink_options_are_config_errors(
    fields: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        SinkOptions(**fields)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert "X-Evil" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "amqp://relay:s3cr?etpass@127.0.0.1/",
        "nats://alice:s3cret?subject=y@127.0.0.1",
        "redis://u:1234?secretword@127.0.0.1",
        "redis://u:1299/3456@127.0.0.1/0",
    ],
)
def test_a_password_with_an_unencoded_delimiter_never_shows_in_the_error(url: str) -> None:
    secret = url.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    with pytest.raises(ConfigError) as caught:
        open_sink(url)
    text = str(caught.value)
    for piece in re.split(r"[/?#@:&=]", secret):
        assert piece not in text, text


def test_find_secrets_finds_the_password_its_decoded_form_and_its_pieces() -> None:
    assert find_secrets("amqp://u:a%2Fbcde/fghi@h/") == [
        "a%2Fbcde/fghi",
        "a/bcde/fghi",
        "a%2Fbcde",
        "bcde",
        "fghi",
    ]
    assert find_secrets("nats://tok3n@127.0.0.1") == ["tok3n"]
    assert find_secrets("redis://127.0.0.1:6379") == []
