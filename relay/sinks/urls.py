"""The secrets in a sink URL, found without trusting the URL to parse.

A password holding an unencoded `/`, `?`, `#` or `@` splits the URL somewhere else than its writer
meant, and a parser's error then quotes a piece of it. So the secret is taken as everything between
the scheme's `://` and the last `@` (after the user name's `:`): too much, never too little.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Sequence

_DELIMITERS = re.compile(r"[/?#@:&=]")
_SHORTEST_PIECE = 4  # shorter pieces of a secret are too likely to be ordinary words


def url_secrets(url: str) -> list[str]:
    """The password (or a lone token) of `url`'s user information, as written and decoded, and
    every piece of it between URL delimiters that a parser might have quoted alone."""
    _, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return []
    userinfo = rest[:at]
    _, colon, password = userinfo.partition(":")
    secret = password if colon else userinfo
    whole = {secret, urllib.parse.unquote(secret)}
    pieces = {p for s in whole for p in _DELIMITERS.split(s) if len(p) >= _SHORTEST_PIECE}
    # Longest first, so that masking a piece cannot leave the rest of a longer secret behind.
    return sorted((s for s in whole | pieces if s), key=lambda s: (-len(s), s))


def hide_secrets(text: str, url: str) -> str:
    """`text` with every secret of `url` (see `url_secrets`) replaced by `***`."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text


def parameters(pairs: Iterable[tuple[str, str]], known: Sequence[str]) -> dict[str, str]:
    """A URL query's `(name, value)` pairs by name, each name one of `known`, given once.

    Raises:
        ValueError: a name is unknown or given twice; its message says which.
    """
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in known:
            raise ValueError(f"unknown parameter {name!r} (known: {', '.join(known)})")
        if name in found:
            raise ValueError(f"parameter {name!r} given twice")
        found[name] = value
    return found
