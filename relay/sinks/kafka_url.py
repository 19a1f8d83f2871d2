"""What a `kafka://` sink URL says, checked once: servers, topic template, client settings.

See `relay.sinks.kafka` for the URL's parameters and what the sink does with them.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping

import attrs

from ..errors import ConfigError
from ..secrets import mask_url
from .nats_url import Template, Unroutable

DEFAULT_PORT = 9092
SETTING_PREFIX = "kafka."
_PARAMETERS = ("topic",)
_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
# Settings relay owns: the servers come from the URL, the rest is what its guarantees rest on
# (acknowledged by every in-sync replica, retried without reordering or duplicating, failed
# after --sink-timeout), or callbacks a URL cannot name.
RESERVED_SETTINGS = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "acks",
        "request.required.acks",
        "enable.idempotence",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "max.in.flight.requests.per.connection",
        "max.in.flight",
        "error_cb",
        "logger",
        "on_delivery",
        "stats_cb",
        "throttle_cb",
        "oauth_cb",
    }
)


def check_topic(name: str) -> str:
    """`name` if Kafka accepts it as a topic: 1-249 of `A-Z a-z 0-9 . _ -`, not `.` or `..`."""
    if _LEGAL_TOPIC.fullmatch(name) is None or name in (".", ".."):
        raise Unroutable(f"not a valid Kafka topic name: {name!r}")
    return name


@attrs.frozen
class KafkaTarget:
    """What a `kafka://` URL says: where to bootstrap, how to name topics, the client's settings."""

    servers: tuple[str, ...]
    topic: Template
    settings: Mapping[str, str] = attrs.field(factory=dict, repr=False)  # may hold credentials


def parse_url(url: str) -> KafkaTarget:
    """The target a `kafka://` URL names.

    Raises:
        ConfigError: (field "sink") a malformed URL, an unknown or reserved parameter, a bad
            template. No message holds a password.
    """

    def fail(reason: str) -> ConfigError:
        return ConfigError("sink", f"{reason} in {mask_url(url)!r}")

    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "kafka" or not sep:
        raise fail("a Kafka sink needs a kafka:// URL")
    authority, _, query = rest.partition("?")
    if any(c in authority for c in "/#") or "#" in query:
        raise fail("no path or fragment allowed (percent-encode these characters in a password)")
    userinfo, at, hosts = authority.rpartition("@")
    settings: dict[str, str] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if not user or not colon:
            raise fail("user information must be user:password")
        settings["sasl.username"] = urllib.parse.unquote(user)
        settings["sasl.password"] = urllib.parse.unquote(password)
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise fail("the query must be name=value pairs joined by &") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        setting = name.removeprefix(SETTING_PREFIX)
        if name.startswith(SETTING_PREFIX) and setting:
            if setting in RESERVED_SETTINGS:
                raise fail(f"{name} is set by relay itself")
            if setting in settings:
                raise fail(f"parameter {name!r} given twice")
            settings[setting] = value
        elif name not in _PARAMETERS:
            known = ", ".join((*_PARAMETERS, f"{SETTING_PREFIX}<client setting>"))
            raise fail(f"unknown parameter {name!r} (known: {known})")
        elif name in params:
            raise fail(f"parameter {name!r} given twice")
        else:
            params[name] = value
    return KafkaTarget(
        servers=tuple(_server(host, fail) for host in hosts.split(",")),
        topic=Template.parse("topic", params.get("topic", "{topic}"), check_topic),
        settings=settings,
    )


def _server(text: str, fail: Callable[[str], ConfigError]) -> str:
    if text.startswith("["):  # an IPv6 address
        address, bracket, rest = text[1:].partition("]")
        host, colon, port = f"[{address}]", rest[:1], rest[1:]
        if not bracket or not address or rest[:1] not in ("", ":") or "[" in address:
            raise fail(f"malformed IPv6 host {text!r}")
    else:
        host, colon, port = text.partition(":")
        if any(c in "[]" for c in host):
            raise fail(f"missing or malformed host {text!r}")
    if not host or any(c.isspace() or c in "@?" for c in host):
        raise fail(f"missing or malformed host {text!r}")
    if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise fail(f"port must be 1-65535 in {text!r}")
    return f"{host}:{port or DEFAULT_PORT}"
