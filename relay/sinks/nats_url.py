"""What a `nats://` sink URL says, checked once: servers, credentials, subject and stream templates.

See `relay.sinks.nats_jetstream` for the URL's parameters and what the sink does with them.
"""

from __future__ import annotations

import functools
import string
import urllib.parse
from collections.abc import Callable

import attrs

from ..errors import ConfigError
from ..secrets import mask_url
from .urls import HostsUrl, parameters

DEFAULT_PORT = 4222
_PARAMETERS = ("subject", "stream", "max_inflight", "msg_id_prefix")


class Unroutable(ValueError):
    """An event's topic or key makes no valid subject or stream name."""


def _printable(text: str) -> bool:
    return not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text)


def check_subject(subject: str) -> str:
    """`subject` if NATS can publish to it: dot-separated tokens, none empty or a wildcard."""
    if any(not t or t in ("*", ">") or not _printable(t) for t in subject.split(".")):
        raise Unroutable(f"not a valid NATS subject: {subject!r}")
    return subject


def check_stream_name(name: str) -> str:
    """`name` if it can name a JetStream stream."""
    if not name or not _printable(name) or any(c in name for c in ".*>/\\"):
        raise Unroutable(f"not a valid JetStream stream name: {name!r}")
    return name


@attrs.frozen
class Template:
    """A subject or stream name with `{topic}` and `{key}` to fill from each event."""

    text: str
    check: Callable[[str], str] = attrs.field(eq=False, repr=False)
    needs_key: bool = False

    @classmethod
    def parse(cls, name: str, text: str, check: Callable[[str], str]) -> Template:
        """The template of URL parameter `name`, checked once.

        Raises:
            ConfigError: an unknown placeholder or a format spec, unbalanced braces, or fixed text
                that makes every name invalid.
        """
        try:
            fields = [part[1:] for part in string.Formatter().parse(text) if part[1] is not None]
        except ValueError as exc:
            raise ConfigError("sink", f"{name} template {text!r}: {exc}") from None
        for field, spec, conversion in fields:
            if field not in ("topic", "key") or spec or conversion:
                reason = f"unknown placeholder {{{field}}} (only {{topic}} and {{key}})"
                raise ConfigError("sink", f"{name} template {text!r}: {reason}")
        template = cls(text, check, needs_key=any(field == "key" for field, _, _ in fields))
        try:
            template.render("topic", "key")
        except Unroutable as exc:
            raise ConfigError("sink", f"{name} template {text!r}: {exc}") from None
        return template

    def render(self, topic: str, key: str | None) -> str:
        """The name for an event of `topic` and `key`; raises `Unroutable` if it is invalid."""
        if key is None and self.needs_key:
            raise Unroutable(f"{self.text!r} needs a key and the event has none")
        return _render(self.text, self.check, topic, key if self.needs_key else None)


@functools.lru_cache(maxsize=4096)
def _render(text: str, check: Callable[[str], str], topic: str, key: str | None) -> str:
    """Remembered: checking a subject character by character, for every event of a batch, was a
    third of the sink's time on trio (profiled); a batch has few topics, often few keys."""
    return check(text.format(topic=topic, key=key))


@attrs.frozen
class Target:
    """What a `nats://` URL says: where to connect, what to log in with, how to name things."""

    servers: tuple[str, ...]
    subject: Template
    stream: Template | None = None
    max_inflight: int | None = None  # None: SinkOptions.max_concurrency
    msg_id_prefix: str = ""
    user: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    token: str | None = attrs.field(default=None, repr=False)


def parse_url(url: str) -> Target:
    """The target a `nats://` URL names.

    Raises:
        ConfigError: (field "sink") a malformed URL, an unknown or invalid parameter. No message
            holds the password or token.
    """

    def fail(reason: str) -> ConfigError:
        return ConfigError("sink", f"{reason} in {mask_url(url)!r}")

    split = HostsUrl.parse(url, "NATS", DEFAULT_PORT, fail)
    userinfo = split.userinfo
    credentials: dict[str, str] = {}
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        if colon:
            credentials = {"user": user, "password": password}
        elif userinfo:
            credentials = {"token": userinfo}
        else:
            raise fail("empty user information")
    try:
        params = parameters(split.query, _PARAMETERS)
    except ValueError as exc:
        raise fail(str(exc)) from None
    inflight = params.get("max_inflight")
    if inflight is not None and not (inflight.isascii() and inflight.isdigit() and int(inflight)):
        raise fail(f"max_inflight must be an integer > 0, got {inflight!r}")
    stream = params.get("stream")
    return Target(
        servers=tuple(f"nats://{server}" for server in split.servers),
        subject=Template.parse("subject", params.get("subject", "{topic}"), check_subject),
        stream=None if stream is None else Template.parse("stream", stream, check_stream_name),
        max_inflight=None if inflight is None else int(inflight),
        msg_id_prefix=params.get("msg_id_prefix", ""),
        **{name: urllib.parse.unquote(value) for name, value in credentials.items()},
    )
