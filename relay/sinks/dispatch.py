"""`open_sink`: the sink a URL names."""

from __future__ import annotations

from ..errors import ConfigError
from ..ports import Sink
from .options import SinkOptions
from .python import load_python_sink
from .stdout import StdoutSink
from .webhook import WebhookSink

_EXPECTED = "stdout, http://..., https://... or python:package.module:callable"


def open_sink(url: str = "stdout", options: SinkOptions | None = None) -> Sink:
    """The sink that `url` names, configured by `options`.

    - `stdout` (also the empty string): `StdoutSink`, one JSON line per event;
    - `http://...`, `https://...`: `WebhookSink`, one POST per event;
    - `python:package.module:callable`: user code, see `load_python_sink` for what it may be.

    Nothing is connected yet: a sink that holds connections opens them when the drainer enters it
    (`async with`).

    Raises:
        ConfigError: (field "sink") the scheme is unknown, the URL is malformed, or the
            `python:` target cannot be loaded. No message holds a URL's password.
    """
    options = SinkOptions() if options is None else options
    text = url.strip()
    if text in ("", "stdout"):
        return StdoutSink()
    scheme, sep, rest = text.partition(":")
    if not sep:
        raise ConfigError("sink", f"unknown sink {text!r}: expected {_EXPECTED}")
    match scheme.lower():
        case "http" | "https":
            return WebhookSink(text, options)
        case "python":
            return load_python_sink(rest)
        case "nats" | "redis":
            raise ConfigError(
                "sink", f"{scheme.lower()}:// sinks are not available in this version"
            )
        case _:
            # Only the scheme: the rest of an unknown URL may hold a password.
            raise ConfigError("sink", f"unknown sink scheme {scheme + ':'!r}: expected {_EXPECTED}")
