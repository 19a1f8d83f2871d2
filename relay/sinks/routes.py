"""Routes: which sink an event goes to, by a NATS-style pattern on its topic.

A pattern is a topic's dot-separated tokens, where `*` stands for exactly one token and a final
`>` for one or more: `orders.*` takes `orders.created` but not `orders` nor `orders.eu.created`;
`orders.>` takes both of the latter; `>` alone takes every topic (the catch-all). NATS subjects,
RabbitMQ topic bindings and Kafka-style dotted names read the same way, and wildcards are whole
tokens only, so a pattern never surprises the way a glob's `*` crossing dots would.

Routes are tried in the order given and the first match wins: the order on the command line (or
in the file) is the order of precedence, which a reader sees at a glance, where "most specific
wins" would need a rule of its own for `orders.*` against `*.created`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

from ..errors import ConfigError
from ..secrets import find_secrets, mask

CATCH_ALL = ">"
_FIELD = "route"
# What a token may not hold: a pattern is typed on a command line and shown in metrics labels.
_BAD_TOKEN_CHARACTER = re.compile(r"[\s=\x00-\x1f\x7f]")
_LONGEST_PATTERN = 255


def _is_text(text: str) -> bool:
    """Printable and valid UTF-8 (not the surrogates a non-UTF-8 argument or variable decodes
    to): a pattern is shown in logs and metrics labels."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return text.isprintable()


@attrs.frozen
class TopicPattern:
    """A NATS-style topic pattern; build it with `TopicPattern.parse`."""

    text: str
    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> TopicPattern:
        """Check `text` and make it a pattern.

        Raises:
            ConfigError: (field "route") empty, too long, an empty token (`a..b`, a leading or
                trailing dot), a wildcard inside a token (`ord*`), a `>` before the last token,
                or a space, `=` or control character.
        """
        # Masked: a URL's query `=` typed before the route's own puts the URL in the pattern.
        shown = mask(text)
        shown = shown if len(shown) <= 40 else f"{shown[:37]}..."
        if not text:
            raise ConfigError(_FIELD, "empty topic pattern: expected e.g. orders.* or >")
        if len(text) > _LONGEST_PATTERN:
            raise ConfigError(_FIELD, f"topic pattern {shown!r} is over {_LONGEST_PATTERN} chars")
        if "://" in text or mask(text) != text:
            # A URL's `=` typed before the route's own: the pattern would show a password.
            raise ConfigError(
                _FIELD, f"topic pattern {shown!r} holds a URL: write PATTERN=URL, pattern first"
            )
        if _BAD_TOKEN_CHARACTER.search(text) or not _is_text(text):
            raise ConfigError(
                _FIELD,
                f"topic pattern {shown!r} holds a space, '=', a control character or non-UTF-8",
            )
        tokens = tuple(text.split("."))
        for index, token in enumerate(tokens):
            if not token:
                raise ConfigError(_FIELD, f"topic pattern {shown!r} has an empty token")
            if token not in ("*", ">") and ("*" in token or ">" in token):
                raise ConfigError(
                    _FIELD, f"topic pattern {shown!r}: a wildcard must be a whole token"
                )
            if token == ">" and index != len(tokens) - 1:
                raise ConfigError(_FIELD, f"topic pattern {shown!r}: '>' must be the last token")
        return cls(text, tokens)

    @property
    def catches_all(self) -> bool:
        """Whether it matches every topic (`>`)."""
        return self.tokens == (CATCH_ALL,)

    def matches(self, topic: str) -> bool:
        """Whether `topic` matches; `>` alone matches every topic, an empty one too."""
        if self.catches_all:
            return True
        parts = topic.split(".")
        for index, token in enumerate(self.tokens):
            if token == ">":
                return len(parts) > index
            if index >= len(parts) or (token != "*" and token != parts[index]):
                return False
        return len(parts) == len(self.tokens)


@attrs.frozen
class RouteSpec:
    """One `PATTERN=URL` as the user wrote it, checked: `url` is the sink's, unopened."""

    pattern: TopicPattern
    url: str = attrs.field(repr=False)  # may hold a password


def parse_route(text: str) -> RouteSpec:
    """`PATTERN=URL` (split at the first `=`: a pattern holds none, a URL may).

    Raises:
        ConfigError: (field "route") no `=`, an empty pattern or URL, or a bad pattern. No
            message holds the URL's password.
    """
    pattern, sep, url = text.partition("=")
    pattern, url = pattern.strip(), url.strip()
    if not sep:
        shown = mask(text, find_secrets(text))
        shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
        raise ConfigError(
            _FIELD, f"expected PATTERN=URL (e.g. 'orders.*=nats://...'), got {shown!r}"
        )
    if not url:
        raise ConfigError(_FIELD, f"route {pattern!r} has no sink URL after '='")
    return RouteSpec(TopicPattern.parse(pattern), url)


def first_match(patterns: Sequence[TopicPattern], topic: str) -> int | None:
    """The index of the first of `patterns` that matches `topic` (its route), or None."""
    return next((i for i, pattern in enumerate(patterns) if pattern.matches(topic)), None)


def check_unique(patterns: Iterable[TopicPattern]) -> None:
    """Refuse a pattern given twice: the second would never get an event.

    Raises:
        ConfigError: (field "route") naming the pattern.
    """
    seen: set[str] = set()
    for pattern in patterns:
        if pattern.text in seen:
            raise ConfigError(_FIELD, f"topic pattern {pattern.text!r} is given twice")
        seen.add(pattern.text)


def check_routes(specs: Sequence[RouteSpec], *, catch_all: str | None) -> None:
    """Refuse routes that cannot all be reached, or that leave events nowhere to go.

    Args:
        catch_all: the sink URL given for the events no route takes (`--sink`), or None.

    Raises:
        ConfigError: (field "route") a pattern given twice; a route after the `>` route, which
            would never get an event; or no catch-all at all (neither `catch_all` nor a `>` route).
    """
    check_unique(spec.pattern for spec in specs)
    for index, spec in enumerate(specs):
        if spec.pattern.catches_all and index != len(specs) - 1:
            raise ConfigError(
                _FIELD,
                f"the catch-all route '>' must come last: {specs[index + 1].pattern.text!r}"
                " after it would never get an event",
            )
    has_catch_all = bool(specs) and specs[-1].pattern.catches_all
    if has_catch_all and catch_all is not None:
        raise ConfigError(_FIELD, "two catch-alls: a '>' route and --sink; keep one")
    if specs and not has_catch_all and catch_all is None:
        raise ConfigError(
            _FIELD,
            "no catch-all: an event no route matches would have nowhere to go;"
            " add --sink URL (or sink = in the file) or a last route '>=URL'",
        )


def route_secrets(specs: Iterable[RouteSpec]) -> list[str]:
    """Every secret in the routes' URLs, for the log filter."""
    return [secret for spec in specs for secret in find_secrets(spec.url)]
