"""The CloudEvents mapping, read back by the CloudEvents SDK's own parsers; and its options."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import pytest
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import amqp, http, rabbitmq
from cloudevents.core.formats.json import JSONFormat

from relay import ConfigError, OutboxEvent
from relay.ports import JsonObject
from relay.sinks import SinkOptions, open_sink
from relay.sinks.cloudevents import AMQP_PREFIX, NATS_PREFIX, CloudEvents, Unmappable

CREATED = datetime.datetime(2026, 12, 5, 14, 0, 1, 250000, tzinfo=datetime.UTC)
# A key and a topic full of what headers and JSON must escape.
AWKWARD = 'k "1" % é\t✓,;=:/?#[]@\\'


def event(
    topic: str = "orders.created",
    key: str | None = "order-1",
    payload: bytes = b'{"total": 9.5, "text": "\\u00e9\\n"}',
    headers: Any = None,
) -> OutboxEvent:
    return OutboxEvent(
        id=41,
        topic=topic,
        key=key,
        payload_json=payload,
        headers={} if headers is None else headers,
        created_at=CREATED,
    )


def from_http_binary(ce: CloudEvents, e: OutboxEvent) -> BaseCloudEvent:
    headers = {name.lower(): value for name, value in ce.http_headers(e).items()}
    return http.from_binary(http.HTTPMessage(headers, e.payload_json), JSONFormat())


def from_structured(ce: CloudEvents, e: OutboxEvent) -> BaseCloudEvent:
    return JSONFormat().read(None, ce.structured_json(e))


def from_amqp_binary(ce: CloudEvents, e: OutboxEvent) -> BaseCloudEvent:
    body, headers, content_type = ce.message(e, AMQP_PREFIX)
    message = amqp.AMQPMessage({"content-type": content_type}, dict(headers), body)
    return amqp.from_binary(message, JSONFormat())


def from_nats_binary(ce: CloudEvents, e: OutboxEvent) -> BaseCloudEvent:
    # The NATS binding is the RabbitMQ one's shape: raw `ce-` headers, the content type apart.
    body, headers, content_type = ce.message(e, NATS_PREFIX)
    return rabbitmq.from_binary(rabbitmq.RabbitMQMessage(headers, content_type, body), JSONFormat())


PARSERS = [
    pytest.param(CloudEvents(), from_http_binary, id="http-binary"),
    pytest.param(CloudEvents(structured=True), from_structured, id="structured"),
    pytest.param(CloudEvents(), from_amqp_binary, id="amqp-binary"),
    pytest.param(CloudEvents(), from_nats_binary, id="nats-binary"),
]


@pytest.mark.parametrize(("ce", "parse"), PARSERS)
def test_every_attribute_reads_back_as_the_sdk_parses_it(ce: CloudEvents, parse: Any) -> None:
    parsed = parse(ce, event())
    assert parsed.get_specversion() == "1.0"
    assert parsed.get_id() == "41"
    assert parsed.get_source() == "/relay"
    assert parsed.get_type() == "orders.created"
    assert parsed.get_subject() == "order-1"
    assert parsed.get_time() == CREATED
    assert parsed.get_datacontenttype() == "application/json"
    assert parsed.get_data() == {"total": 9.5, "text": "é\n"}


@pytest.mark.parametrize(("ce", "parse"), PARSERS)
def test_awkward_topics_and_keys_survive_each_binding(ce: CloudEvents, parse: Any) -> None:
    parsed = parse(ce, event(topic=AWKWARD, key=AWKWARD * 100))
    assert (parsed.get_type(), parsed.get_subject()) == (AWKWARD, AWKWARD * 100)


def test_http_header_values_are_printable_ascii_without_space_quote_or_percent() -> None:
    headers = CloudEvents().http_headers(event(topic=AWKWARD, key=AWKWARD))
    for value in headers.values():
        assert value.isascii() and value.isprintable()
        assert not any(c in value for c in ' "')
        assert re.search("%(?![0-9A-F]{2})", value) is None  # every % starts an escape


@pytest.mark.parametrize(("ce", "parse"), PARSERS)
def test_a_keyless_event_or_an_empty_key_has_no_subject(ce: CloudEvents, parse: Any) -> None:
    assert parse(ce, event(key=None)).get_subject() is None
    assert parse(ce, event(key="")).get_subject() is None


@pytest.mark.parametrize(("ce", "parse"), PARSERS)
def test_headers_named_as_extensions_become_extensions(ce: CloudEvents, parse: Any) -> None:
    headers = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tenant": {"id": 3},
        "retries": 2,
        "Upper": "dropped",
        "with-dash": "dropped",
        "id": "not the event's id",
        "data": "reserved",
    }
    parsed = parse(ce, event(headers=headers))
    assert parsed.get_extension("traceparent") == headers["traceparent"]
    assert parsed.get_extension("tenant") == '{"id":3}'
    assert parsed.get_extension("retries") == "2"
    assert parsed.get_id() == "41"
    attributes = parsed.get_attributes()
    assert not {"Upper", "upper", "with-dash", "data"} & set(attributes)


def test_headers_straight_from_postgresql_are_read_too() -> None:
    e = event(headers=JsonObject(b'{"tenant": "acme"}'))
    assert CloudEvents().attributes(e)["tenant"] == "acme"


@pytest.mark.parametrize("mode", [CloudEvents(), CloudEvents(structured=True)])
def test_an_empty_topic_makes_no_cloudevent(mode: CloudEvents) -> None:
    with pytest.raises(Unmappable, match="topic is empty"):
        mode.message(event(topic=""), NATS_PREFIX)


def test_headers_that_are_no_json_object_make_no_cloudevent() -> None:
    with pytest.raises(Unmappable, match="headers"):
        CloudEvents().attributes(event(headers=JsonObject(b"[1, 2]")))


def test_structured_mode_splices_the_payload_bytes_in_as_they_are() -> None:
    payload = b'{"b": 1,   "a": [1.50, "\\u00e9"]}'  # spacing and escapes a decoder would lose
    body = CloudEvents(structured=True).structured_json(event(payload=payload))
    assert body.endswith(b',"data":' + payload + b"}")
    assert json.loads(body)["data"] == {"b": 1, "a": [1.5, "é"]}


@pytest.mark.parametrize("payload", [b"null", b'"text"', b"[]", b"0", b"{}"])
def test_any_json_payload_is_data(payload: bytes) -> None:
    ce = CloudEvents(structured=True)
    assert from_structured(ce, event(payload=payload)).get_data() == json.loads(payload)


def test_a_huge_payload_is_carried_whole() -> None:
    payload = b'{"pad": "%s"}' % (b"x" * 5_000_000)
    parsed = from_structured(CloudEvents(structured=True), event(payload=payload))
    assert len(parsed.get_data()["pad"]) == 5_000_000  # type: ignore[index]


def test_a_naive_time_is_taken_as_utc() -> None:
    e = OutboxEvent(
        id=1, topic="t", key=None, payload_json=b"{}", created_at=CREATED.replace(tzinfo=None)
    )
    assert from_http_binary(CloudEvents(), e).get_time() == CREATED


def test_the_source_is_configurable() -> None:
    options = SinkOptions(format="cloudevents-structured", cloudevents_source="urn:relay:shop")
    assert options.cloudevents == CloudEvents(structured=True, source="urn:relay:shop")
    assert SinkOptions().cloudevents is None
    assert SinkOptions(format="cloudevents").cloudevents == CloudEvents()


@pytest.mark.parametrize(
    "source", ["", " ", "/relay shop", "/relay\n", "/é", 'a"b', "<x>", "http://[::1"]
)
def test_a_source_that_is_no_uri_reference_is_one_config_error(source: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SinkOptions(format="cloudevents", cloudevents_source=source)
    assert caught.value.field == "sink.cloudevents_source"
    assert "\n" not in str(caught.value).replace("\\n", "")


@pytest.mark.parametrize("format", ["", "CloudEvents", "cloudevents-binary", "json", None, 1])
def test_an_unknown_format_is_one_config_error(format: Any) -> None:
    with pytest.raises(ConfigError, match=r"sink\.format: must be one of relay, cloudevents"):
        SinkOptions(format=format)


@pytest.mark.parametrize("url", ["stdout", "", "python:json:dumps", "kafka://127.0.0.1"])
def test_sinks_without_cloudevents_refuse_the_format(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sink\.format: cloudevents is for the webhook"):
        open_sink(url, SinkOptions(format="cloudevents"))
