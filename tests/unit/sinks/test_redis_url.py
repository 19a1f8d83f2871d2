"""The Redis Streams sink's URL: what it says, what it refuses, and that it keeps its password."""

from __future__ import annotations

import pytest

from relay import ConfigError, OutboxEvent
from relay.secrets import mask_url
from relay.sinks import SinkOptions, open_sink
from relay.sinks.redis_streams import RedisStreamSink
from relay.sinks.redis_url import RedisTarget


def test_a_bare_url_takes_every_default() -> None:
    assert RedisTarget.from_url("redis://127.0.0.1") == RedisTarget(
        host="127.0.0.1",
        port=6379,
        db=0,
        username=None,
        password=None,
        tls=False,
        stream="{topic}",
        maxlen=None,
        dedup_ttl=86_400,
        dedup_prefix="relay:dedup:",
    )


def test_every_part_and_parameter_is_read() -> None:
    target = RedisTarget.from_url(
        "rediss://app:p%40ss%3Aw@redis.internal:6380/3"
        "?stream=events.%7Btopic%7D&maxlen=10000&dedup_ttl=0&dedup_prefix=orders:seen:"
    )
    assert target == RedisTarget(
        host="redis.internal",
        port=6380,
        db=3,
        username="app",
        password="p@ss:w",
        tls=True,
        stream="events.{topic}",
        maxlen=10_000,
        dedup_ttl=0,
        dedup_prefix="orders:seen:",
    )


@pytest.mark.parametrize(
    ("template", "topic", "stream"),
    [
        ("{topic}", "orders", "orders"),
        ("app:{topic}:events", "orders", "app:orders:events"),
        ("all-events", "orders", "all-events"),
        ("{{literal}}:{topic}", "orders", "{literal}:orders"),
    ],
)
def test_the_stream_is_named_from_the_template(template: str, topic: str, stream: str) -> None:
    target = RedisTarget.from_url(f"redis://h/?stream={template}")
    assert target.stream_for(topic) == stream


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?strem=x", "unknown parameter 'strem'"),
        ("?socket_timeout=5", "unknown parameter 'socket_timeout'"),
        ("?maxlen=5&maxlen=6", "parameter 'maxlen' given twice"),
        ("?maxlen", "the query must be name=value pairs"),
        ("?stream={key}", "only {topic} may be used"),
        ("?stream={topic.upper}", "only {topic} may be used"),
        ("?stream={topic!r}", "only {topic} may be used"),
        ("?stream={topic:>9}", "only {topic} may be used"),
        ("?stream={}", "only {topic} may be used"),
        ("?stream={topic", "stream template '{topic'"),
        ("?stream=", "the stream template is empty"),
        ("?maxlen=0", "maxlen must be an integer >= 1, got '0'"),
        ("?maxlen=-5", "maxlen must be an integer >= 1"),
        ("?maxlen=many", "maxlen must be an integer >= 1"),
        ("?dedup_ttl=-1", "dedup_ttl must be an integer >= 0"),
        ("?dedup_ttl=1.5", "dedup_ttl must be an integer >= 0"),
        ("?dedup_prefix=", "dedup_prefix must not be empty"),
    ],
)
def test_a_bad_parameter_is_a_config_error(query: str, reason: str) -> None:
    url = f"redis://app:hunter2@127.0.0.1:6379/0{query}"
    with pytest.raises(ConfigError) as caught:
        RedisStreamSink(url, SinkOptions())
    assert caught.value.field == "sink"
    assert reason in caught.value.reason
    assert "hunter2" not in str(caught.value)
    assert "app:***@127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://app:hunter2@127.0.0.1:port/0", "not a valid URL"),
        ("redis://app:hunter2@127.0.0.1:99999/0", "not a valid URL"),
        ("redis://app:hunter2@127.0.0.1:0/0", "with a host (and a port > 0)"),
        ("redis://app:hunter2@/0", "with a host"),
        ("redis://app:hunter2@127.0.0.1/zero", "the path must be a database number, got 'zero'"),
        ("redis://app:hunter2@127.0.0.1/0/1", "the path must be a database number"),
        ("redis://app:hunter2@127.0.0.1/0#top", "a space or a #fragment"),
        ("redis://app:hunter2@127.0.0.1/0?stream=a b", "a space or a #fragment"),
        ("redis://app:hunt?er2@127.0.0.1/0", "not a valid URL"),  # a raw "?" in the password
    ],
)
def test_a_malformed_url_is_a_config_error_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisStreamSink(url, SinkOptions())
    assert caught.value.field == "sink"
    assert reason in caught.value.reason
    assert "hunter2" not in str(caught.value) and "hunt?er2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://app@127.0.0.1", "redis://app@127.0.0.1"),
        ("redis://:hunter2@127.0.0.1/1?maxlen=5", "redis://:***@127.0.0.1/1?maxlen=5"),
        ("rediss://app:hunter2@h/0?stream=a@b", "rediss://app:***@h/0?stream=a@b"),
        ("redis://app:hun@ter2@h:1", "redis://app:***@h:1"),
        ("redis://app:hunt?er2@h/0", "redis://app:***@h/0"),
    ],
)
def test_redact_hides_the_password_only(url: str, redacted: str) -> None:
    assert mask_url(url) == redacted


def test_the_repr_hides_the_password() -> None:
    sink = RedisStreamSink("redis://app:hunter2@127.0.0.1:6379/0?stream=s", SinkOptions())
    assert "hunter2" not in repr(sink)
    assert "redis://app:***@127.0.0.1:6379/0?stream=s" in repr(sink)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379", "REDISS://127.0.0.1:6380/2"])
def test_open_sink_maps_both_schemes_to_the_redis_sink(url: str) -> None:
    sink = open_sink(url)
    assert isinstance(sink, RedisStreamSink)
    assert sink.target.tls == url.lower().startswith("rediss")


def test_an_unreadable_ca_file_for_rediss_is_a_config_error() -> None:
    options = SinkOptions(ca_file="/nonexistent/ca.pem")
    with pytest.raises(ConfigError) as caught:
        RedisStreamSink("rediss://127.0.0.1:6380", options)
    assert caught.value.field == "sink.ca_file"


async def test_deliver_before_entering_says_to_enter_first() -> None:
    sink = RedisStreamSink("redis://127.0.0.1:6379", SinkOptions())
    with pytest.raises(RuntimeError, match="enter it first: async with sink"):
        await sink.deliver([OutboxEvent.create(1, "orders", {})])
