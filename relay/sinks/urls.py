"""What the sink URL parsers share: checking a query's parameters."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence


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
