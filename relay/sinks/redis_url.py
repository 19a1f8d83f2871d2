"""What a `redis://` sink URL says, checked once: the server, the stream template, the dedup window.

See `relay.sinks.redis_streams` for the URL's parameters and what the sink does with them.
"""

from __future__ import annotations

import string
import urllib.parse

import attrs

from ..errors import ConfigError
from ..secrets import mask_url
from .urls import parameters

DEFAULT_STREAM = "{topic}"
DEFAULT_DEDUP_TTL = 86_400
DEFAULT_DEDUP_PREFIX = "relay:dedup:"
_PARAMETERS = ("stream", "maxlen", "dedup_ttl", "dedup_prefix")


def _fail(url: str, reason: str) -> ConfigError:
    return ConfigError("sink", f"{reason} in {mask_url(url)!r}")


@attrs.frozen
class RedisTarget:
    """What a `redis://` URL says: where the server is and how events are written."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    stream: str = DEFAULT_STREAM
    maxlen: int | None = None
    dedup_ttl: int = DEFAULT_DEDUP_TTL
    dedup_prefix: str = DEFAULT_DEDUP_PREFIX

    @classmethod
    def from_url(cls, url: str) -> RedisTarget:
        """Parse and check `url`; a ConfigError (field "sink") names what is wrong."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            # Not the error's text: it quotes what it could not parse, maybe the password.
            raise _fail(url, "not a valid URL (a port that is not a number?)") from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname or port == 0:
            raise _fail(url, "expected redis:// or rediss:// with a host (and a port > 0)")
        if any(c.isspace() for c in url) or parts.fragment:
            raise _fail(url, "a space or a #fragment")
        path = parts.path.strip("/")
        if path and not (path.isascii() and path.isdigit()):
            raise _fail(url, f"the path must be a database number, got {path!r}")
        try:
            params = parameters(parts.query, _PARAMETERS)
        except ValueError as exc:
            raise _fail(url, str(exc)) from None
        stream = params.get("stream", DEFAULT_STREAM)
        _check_template(url, stream)
        if not params.get("dedup_prefix", DEFAULT_DEDUP_PREFIX):
            raise _fail(url, "dedup_prefix must not be empty")
        maxlen = params.get("maxlen")
        return cls(
            host=parts.hostname,
            port=6379 if port is None else port,
            db=int(path or 0),
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
            stream=stream,
            maxlen=None if maxlen is None else _integer(url, "maxlen", maxlen, least=1),
            dedup_ttl=_integer(url, "dedup_ttl", params.get("dedup_ttl", DEFAULT_DEDUP_TTL)),
            dedup_prefix=params.get("dedup_prefix", DEFAULT_DEDUP_PREFIX),
        )

    def stream_for(self, topic: str) -> str:
        """The stream an event of `topic` goes to."""
        return self.stream.format(topic=topic)


def _integer(url: str, name: str, value: str | int, *, least: int = 0) -> int:
    text = str(value)
    if not (text.isascii() and text.isdigit()) or int(text) < least:
        raise _fail(url, f"{name} must be an integer >= {least}, got {text!r}")
    return int(text)


def _check_template(url: str, template: str) -> None:
    if not template:
        raise _fail(url, "the stream template is empty")
    try:
        fields = [
            parsed[1:] for parsed in string.Formatter().parse(template) if parsed[1] is not None
        ]
    except ValueError as exc:
        raise _fail(url, f"stream template {template!r}: {exc}") from None
    if any(field != ("topic", "", None) for field in fields):
        raise _fail(url, f"stream template {template!r}: only {{topic}} may be used")
