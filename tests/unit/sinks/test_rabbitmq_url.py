"""The RabbitMQ sink's URL: parsed once, checked, its password never shown. No network."""

from __future__ import annotations

import pytest

from relay import ConfigError, OutboxEvent
from relay.sinks import SinkOptions, open_sink
from relay.sinks.rabbitmq import RabbitMQSink
from relay.sinks.rabbitmq_url import DEFAULT_MAX_MESSAGE_SIZE, AmqpTarget, parse_url, redact


def ev(topic: str = "orders.created", key: str | None = "o-1") -> OutboxEvent:
    return OutboxEvent(id=7, topic=topic, key=key, payload_json=b"{}")


def test_a_bare_url_means_guest_on_the_default_vhost_and_the_relay_exchange() -> None:
    assert parse_url("amqp://127.0.0.1") == AmqpTarget(
        tls=False,
        host="127.0.0.1",
        port=5672,
        user="guest",
        password="guest",
        vhost="/",
        exchange="relay",
        declare=None,
        routing_key="{topic}",
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
    )
    assert DEFAULT_MAX_MESSAGE_SIZE == 16 * 1024 * 1024


def test_every_part_of_a_full_url_is_read() -> None:
    target = parse_url(
        "AMQPS://app%40corp:p%40ss%3Aword@Broker.example.com:5999/prod%2Feu"
        "?exchange=orders&declare=topic&routing_key=ev.{topic}.{key}&max_message_size=1000"
    )
    assert target == AmqpTarget(
        tls=True,
        host="broker.example.com",
        port=5999,
        user="app@corp",
        password="p@ss:word",
        vhost="prod/eu",
        exchange="orders",
        declare="topic",
        routing_key="ev.{topic}.{key}",
        max_message_size=1000,
    )


@pytest.mark.parametrize(
    ("url", "port", "vhost"),
    [
        ("amqp://h/", 5672, "/"),
        ("amqp://h/%2F", 5672, "/"),
        ("amqp://h/staging", 5672, "staging"),
        ("amqps://h", 5671, "/"),
        ("amqp://[::1]:5673/v", 5673, "v"),
    ],
)
def test_ports_default_by_scheme_and_the_vhost_is_the_decoded_path(
    url: str, port: int, vhost: str
) -> None:
    target = parse_url(url)
    assert (target.port, target.vhost) == (port, vhost)


def test_an_empty_exchange_is_the_brokers_default_exchange() -> None:
    assert parse_url("amqp://h/?exchange=").exchange == ""


@pytest.mark.parametrize(
    ("template", "event", "expected"),
    [
        ("{topic}", ev(), "orders.created"),
        ("{topic}.{key}", ev(), "orders.created.o-1"),
        ("{topic}.{key}", ev(key=None), "orders.created."),
        ("fixed", ev(), "fixed"),
        ("{{{topic}}}", ev(), "{orders.created}"),
    ],
)
def test_the_routing_key_is_rendered_from_topic_and_key(
    template: str, event: OutboxEvent, expected: str
) -> None:
    assert parse_url(f"amqp://h/?routing_key={template}").route(event) == expected


def test_the_where_of_a_target_names_the_broker_without_user_information() -> None:
    assert parse_url("amqp://u:hunter2@h:1234/a%2Fb").where == "amqp://h:1234/a%2Fb"
    assert parse_url("amqps://[::1]").where == "amqps://[::1]:5671/%2F"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("amqp://guest:hunter2@h/?exchnage=x", "unknown parameter 'exchnage'"),
        ("amqp://guest:hunter2@h/?exchange=a&exchange=b", "parameter 'exchange' given twice"),
        ("amqp://guest:hunter2@h/?exchange", "the query must be name=value pairs"),
        ("amqp://guest:hunter2@h/?exchange=" + "x" * 256, "at most 255 bytes"),
        ("amqp://guest:hunter2@h/?declare=queue", "declare must be one of"),
        ("amqp://guest:hunter2@h/?declare=", "declare must be one of"),
        ("amqp://guest:hunter2@h/?exchange=amq.topic&declare=topic", "cannot be declared"),
        ("amqp://guest:hunter2@h/?exchange=&declare=direct", "cannot be declared"),
        ("amqp://guest:hunter2@h/?routing_key={id}", "only {topic} and {key}"),
        ("amqp://guest:hunter2@h/?routing_key={topic!r}", "only {topic} and {key}"),
        ("amqp://guest:hunter2@h/?routing_key={topic:>9}", "only {topic} and {key}"),
        ("amqp://guest:hunter2@h/?routing_key={topic", "not a valid template"),
        ("amqp://guest:hunter2@h/?max_message_size=0", "max_message_size must be"),
        ("amqp://guest:hunter2@h/?max_message_size=1e6", "max_message_size must be"),
        ("amqp://guest:hunter2@h:99999/", "not a valid URL"),
        ("amqp://guest:hunter2@h:port/", "not a valid URL"),
        ("amqp://guest:hunter2@/", "expected a host"),
        ("amqp://guest:hunter2@bro ker/", "expected a host and no spaces"),
        ("amqp://guest:hunter2@h/#frag", "a fragment"),
        ("http://guest:hunter2@h/", "expected an amqp:// or amqps:// URL"),
    ],
)
def test_a_bad_url_is_a_config_error_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RabbitMQSink(url)
    assert caught.value.field == "sink"
    assert reason in caught.value.reason
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:hunter2@h:5672/v?exchange=x", "amqp://guest:***@h:5672/v?exchange=x"),
        ("amqp://guest@h/", "amqp://guest@h/"),
        ("amqp://h/", "amqp://h/"),
        ("amqp://u:hunter2@h:99999/", "amqp://u:***@h:99999/"),
        ("amqp://u:hunter2@[::1/", "<invalid URL>"),
    ],
)
def test_redact_hides_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_reprs_hide_the_password() -> None:
    sink = RabbitMQSink("amqp://guest:hunter2@h/?exchange=x")
    assert "hunter2" not in repr(sink)
    assert "guest:***@h" in repr(sink)
    assert "hunter2" not in repr(sink.target)


@pytest.mark.parametrize("url", ["amqp://h/?exchange=x", "amqps://h/", "AMQP://h"])
def test_open_sink_maps_both_schemes_to_the_rabbitmq_sink(url: str) -> None:
    options = SinkOptions(timeout=3, max_concurrency=4)
    sink = open_sink(url, options)
    assert isinstance(sink, RabbitMQSink)
    assert sink.options is options


def test_a_missing_ca_file_is_a_config_error_for_amqps_only() -> None:
    options = SinkOptions(ca_file="/nonexistent/relay-ca.pem")
    with pytest.raises(ConfigError) as caught:
        RabbitMQSink("amqps://h/", options)
    assert caught.value.field == "sink.ca_file"
    RabbitMQSink("amqp://h/", options)  # plain AMQP reads no certificate


async def test_deliver_before_entering_says_to_enter_first() -> None:
    with pytest.raises(RuntimeError, match="enter it first: async with sink"):
        await RabbitMQSink("amqp://h/").deliver([ev()])


@pytest.mark.parametrize("delimiter", ["/", "?", "#"])
def test_a_url_parser_error_shows_no_piece_of_the_password(delimiter: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url(f"amqp://u:ab{delimiter}cdefgh@127.0.0.1:1/")
    assert "'ab'" not in str(caught.value) and "cdefgh" not in str(caught.value)
