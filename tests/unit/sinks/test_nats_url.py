"""The `nats://` sink URL: parsing, defaults, templates, configuration errors and redaction."""

from __future__ import annotations

import pytest

from relay import ConfigError, OutboxEvent
from relay.secrets import mask_url
from relay.sinks import SinkOptions, open_sink
from relay.sinks.nats_jetstream import JetStreamSink
from relay.sinks.nats_url import Unroutable, parse_url


def test_a_bare_url_publishes_to_the_topic_on_the_default_port() -> None:
    target = parse_url("nats://127.0.0.1")
    assert target.servers == ("nats://127.0.0.1:4222",)
    assert target.subject.render("orders.created", None) == "orders.created"
    assert target.stream is None
    assert target.max_inflight is None  # the sink then takes SinkOptions.max_concurrency
    assert target.msg_id_prefix == ""
    assert (target.user, target.password, target.token) == (None, None, None)


def test_several_hosts_are_kept_in_order_with_their_ports() -> None:
    target = parse_url("nats://a.example:4223,b.example,[::1]:4224,[fe80::1]")
    assert target.servers == (
        "nats://a.example:4223",
        "nats://b.example:4222",
        "nats://[::1]:4224",
        "nats://[fe80::1]:4222",
    )


def test_user_and_password_are_percent_decoded() -> None:
    target = parse_url("nats://relay:p%40ss%3Aw%2Frd@127.0.0.1:4222")
    assert (target.user, target.password, target.token) == ("relay", "p@ss:w/rd", None)


def test_a_lone_user_part_is_a_token() -> None:
    target = parse_url("nats://s3cr%2Ft@127.0.0.1")
    assert (target.user, target.password, target.token) == (None, None, "s3cr/t")


def test_the_templates_fill_topic_and_key() -> None:
    target = parse_url(
        "nats://127.0.0.1?subject=app.{topic}.by-key.{key}&stream=ORDERS_{topic}&max_inflight=5"
    )
    assert target.subject.render("orders", "o-1") == "app.orders.by-key.o-1"
    assert target.stream is not None
    assert target.stream.render("orders", None) == "ORDERS_orders"
    assert target.max_inflight == 5


def test_doubled_braces_are_literal_and_percent_encoding_is_decoded() -> None:
    target = parse_url("nats://127.0.0.1?subject=x%7B%7B%7D%7D.%7Btopic%7D")
    assert target.subject.render("t", None) == "x{}.t"


def test_a_keyless_event_cannot_fill_a_key_placeholder() -> None:
    target = parse_url("nats://127.0.0.1?subject=orders.{key}")
    with pytest.raises(Unroutable, match="needs a key and the event has none"):
        target.subject.render("orders", None)


@pytest.mark.parametrize(
    ("topic", "key"),
    [("has space", "k"), ("a..b", "k"), ("a.*", "k"), ("a.>", "k"), ("", "k"), ("t", "x.")],
)
def test_a_topic_or_key_that_makes_no_valid_subject_is_unroutable(topic: str, key: str) -> None:
    target = parse_url("nats://127.0.0.1?subject={topic}.{key}")
    with pytest.raises(Unroutable, match="not a valid NATS subject"):
        target.subject.render(topic, key)


@pytest.mark.parametrize("topic", ["orders.created", "a b", "a/b", "*", ""])
def test_a_topic_that_makes_no_valid_stream_name_is_unroutable(topic: str) -> None:
    target = parse_url("nats://127.0.0.1?stream={topic}")
    assert target.stream is not None
    with pytest.raises(Unroutable, match="not a valid JetStream stream name"):
        target.stream.render(topic, None)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nats://u:hunter2@127.0.0.1/path", "no path or fragment allowed"),
        ("nats://u:hunter2@127.0.0.1#frag", "no path or fragment allowed"),
        ("nats://u:hunter2@127.0.0.1?subjekt=x", "unknown parameter 'subjekt'"),
        ("nats://u:hunter2@127.0.0.1?subject=a&subject=b", "parameter 'subject' given twice"),
        ("nats://u:hunter2@127.0.0.1?subject", "the query must be name=value pairs"),
        ("nats://u:hunter2@127.0.0.1?max_inflight=0", "max_inflight must be an integer > 0"),
        ("nats://u:hunter2@127.0.0.1?max_inflight=-1", "max_inflight must be an integer > 0"),
        ("nats://u:hunter2@127.0.0.1?max_inflight=lots", "max_inflight must be an integer > 0"),
        ("nats://u:hunter2@127.0.0.1:0", "port must be 1-65535"),
        ("nats://u:hunter2@127.0.0.1:65536", "port must be 1-65535"),
        ("nats://u:hunter2@127.0.0.1:http", "port must be 1-65535"),
        ("nats://u:hunter2@", "missing or malformed host"),
        ("nats://u:hunter2@a,,b", "missing or malformed host"),
        ("nats://u:hunter2@::1", "missing or malformed host"),
        ("nats://u:hunter2@[::1", "malformed IPv6 host"),
        ("nats://u:hunter2@[::1]x", "malformed IPv6 host"),
        ("nats://u:hunter2@exa mple", "missing or malformed host"),
        ("nats://@127.0.0.1", "empty user information"),
        ("http://u:hunter2@127.0.0.1", "a NATS sink needs a nats:// URL"),
        ("nats:127.0.0.1", "a NATS sink needs a nats:// URL"),
        ("nats://u:hunter2@h?subject={topik}", "unknown placeholder {topik}"),
        ("nats://u:hunter2@h?subject={}", "unknown placeholder {}"),
        ("nats://u:hunter2@h?subject={0}", "unknown placeholder {0}"),
        ("nats://u:hunter2@h?subject={topic.x}", "unknown placeholder {topic.x}"),
        ("nats://u:hunter2@h?subject={topic!r}", "unknown placeholder {topic}"),
        ("nats://u:hunter2@h?subject={topic:>9}", "unknown placeholder {topic}"),
        ("nats://u:hunter2@h?subject={topic", "subject template '{topic'"),
        ("nats://u:hunter2@h?subject=a..{topic}", "not a valid NATS subject"),
        ("nats://u:hunter2@h?subject=a.>", "not a valid NATS subject"),
        ("nats://u:hunter2@h?subject=", "not a valid NATS subject"),
        ("nats://u:hunter2@h?stream=", "not a valid JetStream stream name"),
        ("nats://u:hunter2@h?stream=a.{topic}", "not a valid JetStream stream name"),
    ],
)
def test_a_bad_url_is_a_config_error_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        JetStreamSink(url)
    assert caught.value.field == "sink"
    assert reason in caught.value.reason
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("nats://relay:hunter2@h1,h2:4223?subject=x", "nats://relay:***@h1,h2:4223?subject=x"),
        ("nats://hunter2@h", "nats://***@h"),
        ("nats://h:4222?stream=S", "nats://h:4222?stream=S"),
        ("nats://u:hun@ter2@h", "nats://u:***@h"),
    ],
)
def test_redact_hides_the_password_or_the_token(url: str, redacted: str) -> None:
    assert mask_url(url) == redacted


def test_the_sink_repr_hides_the_password() -> None:
    sink = JetStreamSink("nats://relay:hunter2@127.0.0.1:4222?subject=x.{topic}")
    assert "hunter2" not in repr(sink)
    assert "relay:***@127.0.0.1:4222" in repr(sink)


def test_open_sink_maps_nats_urls_to_the_jetstream_sink() -> None:
    sink = open_sink("nats://127.0.0.1:4222?stream=ORDERS", SinkOptions(timeout=2))
    assert isinstance(sink, JetStreamSink)
    assert sink.options.timeout == 2


async def test_delivering_without_entering_the_sink_says_to_enter_it() -> None:
    sink = JetStreamSink("nats://127.0.0.1:4222")
    with pytest.raises(RuntimeError, match="enter it first: async with sink"):
        await sink.deliver([OutboxEvent.create(1, "orders", {})])


def test_a_msg_id_prefix_keeps_two_outboxes_apart_in_one_stream() -> None:
    assert parse_url("nats://127.0.0.1?msg_id_prefix=billing-").msg_id_prefix == "billing-"


def test_rendered_names_are_remembered_per_topic_and_key_and_a_bad_one_is_refused_every_time() -> (
    None
):
    target = parse_url("nats://h?subject=app.{topic}.{key}")
    assert target.subject.render("orders", "a") == "app.orders.a"
    assert target.subject.render("orders", "b") == "app.orders.b"
    assert target.subject.render("orders", "a") == "app.orders.a"
    for _ in range(2):
        with pytest.raises(Unroutable, match="not a valid NATS subject"):
            target.subject.render("orders", "a b")
    keyless = parse_url("nats://h?subject={topic}")
    assert keyless.subject.render("orders", "a") == keyless.subject.render("orders", None)
