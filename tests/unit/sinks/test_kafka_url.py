"""The `kafka://` sink URL: parsing, defaults, client settings, configuration errors, redaction."""

from __future__ import annotations

import pytest

from relay import ConfigError
from relay.sinks import SinkOptions, open_sink
from relay.sinks.kafka_url import check_topic, parse_url
from relay.sinks.nats_url import Unroutable


def test_a_bare_url_produces_to_the_topic_on_the_default_port() -> None:
    target = parse_url("kafka://127.0.0.1")
    assert target.servers == ("127.0.0.1:9092",)
    assert target.topic.render("orders.created", None) == "orders.created"
    assert target.settings == {}


def test_several_bootstrap_servers_keep_their_order_and_ports() -> None:
    target = parse_url("kafka://a.example:9093,b.example,[::1]:9094")
    assert target.servers == ("a.example:9093", "b.example:9092", "[::1]:9094")


def test_the_topic_template_fills_topic_and_key() -> None:
    target = parse_url("kafka://h?topic=app.{topic}-{key}")
    assert target.topic.render("orders", "o-1") == "app.orders-o-1"
    with pytest.raises(Unroutable, match="needs a key"):
        target.topic.render("orders", None)


def test_client_settings_pass_through_by_prefix() -> None:
    target = parse_url("kafka://h?kafka.linger.ms=5&kafka.compression.type=lz4&topic=t")
    assert target.settings == {"linger.ms": "5", "compression.type": "lz4"}


def test_user_and_password_become_sasl_credentials_percent_decoded() -> None:
    target = parse_url("kafka://relay:p%40ss%3Aw%2Frd@h:9092")
    assert target.settings == {"sasl.username": "relay", "sasl.password": "p@ss:w/rd"}
    assert "p@ss" not in repr(target)


@pytest.mark.parametrize("name", ["orders", "a.b_c-D9", "x" * 249])
def test_legal_topic_names_pass(name: str) -> None:
    assert check_topic(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "with space", "slash/", "é", "x" * 250])
def test_illegal_topic_names_are_unroutable(name: str) -> None:
    with pytest.raises(Unroutable):
        check_topic(name)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("kafka://h:0", "port must be 1-65535"),
        ("kafka://h:65536", "port must be 1-65535"),
        ("kafka://h:x", "port must be 1-65535"),
        ("kafka://h:", "port must be 1-65535"),
        ("kafka://", "missing or malformed host"),
        ("kafka://a,,b", "missing or malformed host"),
        ("kafka://[::1", "malformed IPv6 host"),
        ("kafka://h/path", "no path or fragment"),
        ("kafka://h?subject=x", "unknown parameter 'subject'"),
        ("kafka://h?topic=a&topic=b", "given twice"),
        ("kafka://h?kafka.linger.ms=1&kafka.linger.ms=2", "given twice"),
        ("kafka://h?kafka.acks=1", "kafka.acks is set by relay itself"),
        ("kafka://h?kafka.enable.idempotence=false", "set by relay itself"),
        ("kafka://h?kafka.bootstrap.servers=x", "set by relay itself"),
        ("kafka://h?topic={topik}", "unknown placeholder {topik}"),
        ("kafka://h?topic=bad topic {topic}", "not a valid Kafka topic name"),
        ("kafka://h?topic", "name=value pairs"),
        ("kafka://user@h", "user:password"),
        ("kafka:h", "kafka:// URL"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_problem(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason.replace("{", r"\{").replace("}", r"\}")):
        parse_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "kafka://relay:s3cr/et?pw@h:70000",
        "kafka://relay:s3cr#et@h?topic={nope}",
        "kafka://relay:s3cr@et:x@h:x",
        "kafka://h:9092?kafka.sasl.password=s3cr&et&bogus=1",
        "kafka://h:9092?kafka.sasl.password=s3cr%26et&kafka.acks=0",
    ],
)
def test_passwords_with_delimiters_are_never_printed(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_sink(url, SinkOptions())
    assert "s3cr" not in str(caught.value)
    assert "et@" not in str(caught.value)


def test_a_setting_the_client_does_not_know_stops_at_start() -> None:
    pytest.importorskip("confluent_kafka", reason="the Kafka sink needs confluent-kafka")
    with pytest.raises(ConfigError, match=r"no\.such\.setting"):
        open_sink("kafka://h?kafka.no.such.setting=1", SinkOptions())


def test_the_sink_repr_hides_the_password() -> None:
    pytest.importorskip("confluent_kafka", reason="the Kafka sink needs confluent-kafka")
    sink = open_sink("kafka://relay:hunter22@h?kafka.ssl.key.password=topsecret", SinkOptions())
    assert "hunter22" not in repr(sink)
    assert "topsecret" not in repr(sink)
