"""Logging for the daemon: stderr only, human-readable or JSON, with secrets masked."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Iterable

from ..secrets import mask

# What every record has; anything else was given as `extra=` and is a field of the JSON line.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _extra(record: logging.LogRecord) -> dict[str, object]:
    return {name: value for name, value in vars(record).items() if name not in _STANDARD}


class _MaskSecrets(logging.Filter):
    """Replace known secrets, and anything shaped like a DSN password, by `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        for name, value in _extra(record).items():
            if isinstance(value, str):
                setattr(record, name, self.mask(value))
        return True

    def mask(self, text: str) -> str:
        return mask(text, self.secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the exception if any, and the
    record's `extra` fields as keys of their own (they never replace the four above)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            **_extra(record),
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text or record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, default=str)


def configure(level: str = "info", fmt: str = "text", *, secrets: Iterable[str] = ()) -> None:
    """Send relay's logs (and its libraries') to stderr, never stdout."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_MaskSecrets(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("relay").setLevel(level.upper())
    # The pool warns on each of its own reconnect tries; relay logs every try of an outage once,
    # with its cause (relay.outages), so the pool's words would only repeat it.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
