"""What the sink URL parsers share: checking a query's parameters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


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
