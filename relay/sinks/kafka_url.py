"""What a `kafka://` sink URL says, checked once: servers, topic template, client settings.

See `relay.sinks.kafka` for the URL's parameters and what the sink does with them.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

import attrs

from ..errors import ConfigError
from ..secrets import mask_url
from .nats_url import Template, Unroutable
from .urls import HostsUrl

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

    split = HostsUrl.parse(url, "Kafka", DEFAULT_PORT, fail)
    userinfo, query = split.userinfo, split.query
    settings: dict[str, str] = {}
    if userinfo is not None:
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
        servers=split.servers,
        topic=Template.parse("topic", params.get("topic", "{topic}"), check_topic),
        settings=settings,
    )
