"""What the sink URL parsers share: multi-host authorities, and checking a query's parameters."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence

import attrs

from ..errors import ConfigError


@attrs.frozen
class HostsUrl:
    """`scheme://[userinfo@]host[:port][,host[:port]...][?query]`, split (no path, no fragment).

    `userinfo` is None without an `@`; `servers` are `host:port`, the default port filled in.
    """

    userinfo: str | None
    servers: tuple[str, ...]
    query: str

    @classmethod
    def parse(
        cls, url: str, kind: str, default_port: int, fail: Callable[[str], ConfigError]
    ) -> HostsUrl:
        """Raises what `fail` makes of a reason; `kind` names the sink (`NATS`: `nats://`)."""
        scheme = kind.lower()
        given, sep, rest = url.partition("://")
        if given.lower() != scheme or not sep:
            raise fail(f"a {kind} sink needs a {scheme}:// URL")
        authority, _, query = rest.partition("?")
        if any(c in authority for c in "/#") or "#" in query:
            raise fail(
                "no path or fragment allowed (percent-encode these characters in a password)"
            )
        # The last `@`: a password may hold one unencoded.
        userinfo, at, hosts = authority.rpartition("@")
        servers = tuple(_server(host, default_port, fail) for host in hosts.split(","))
        return cls(userinfo if at else None, servers, query)


def _server(text: str, default_port: int, fail: Callable[[str], ConfigError]) -> str:
    if text.startswith("["):  # an IPv6 address
        address, bracket, rest = text[1:].partition("]")
        host, colon, port = f"[{address}]", rest[:1], rest[1:]
        if not bracket or not address or rest[:1] not in ("", ":") or "[" in address:
            raise fail(f"malformed IPv6 host {text!r}")
    else:
        host, colon, port = text.partition(":")
        if any(c in "[]" for c in host):
            raise fail(f"missing or malformed host {text!r}")
    if not host or any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c in "@?" for c in host):
        raise fail(f"missing or malformed host {text!r}")
    if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise fail(f"port must be 1-65535 in {text!r}")
    return f"{host}:{port or default_port}"


def parameters(query: str, known: Sequence[str]) -> dict[str, str]:
    """A URL query's `name=value` pairs by name, each name one of `known`, given once.

    Raises:
        ValueError: the query is not `name=value` pairs, or a name is unknown or given twice; its
            message says which.
    """
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError("the query must be name=value pairs joined by &") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in known:
            raise ValueError(f"unknown parameter {name!r} (known: {', '.join(known)})")
        if name in found:
            raise ValueError(f"parameter {name!r} given twice")
        found[name] = value
    return found
