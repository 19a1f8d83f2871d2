"""Relay's own secrets out of the environment before user code runs in the daemon.

A `python:` sink is imported into the relay's process and could read `os.environ`. Once the
settings are read, the daemon takes out of it: `RELAY_DSN`, `DATABASE_URL`, `PGPASSWORD`, every
`RELAY_*` option marked secret (`RELAY_WEBHOOK_SECRET`), and any other `RELAY_*` variable holding
something `relay.secrets.find_secrets` calls a secret (a sink URL's password). A `PGPASSWORD` the
DSN relies on is moved into the DSN first, as libpq would have used it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

import attrs

from ..secrets import find_secrets
from .settings import RUN_OPTIONS, Settings

_ALWAYS = frozenset({"RELAY_DSN", "DATABASE_URL", "PGPASSWORD"})
_SECRET_OPTIONS = frozenset(option.env for option in RUN_OPTIONS if option.secret)


def take_secrets(
    settings: Settings, environ: MutableMapping[str, str] | None = None
) -> tuple[Settings, list[str]]:
    """Remove relay's secrets from `environ` (default `os.environ`).

    Returns:
        `settings`, its DSN given `PGPASSWORD` when it named no password of its own; and the
        names removed, sorted.
    """
    env = os.environ if environ is None else environ
    password = env.get("PGPASSWORD")
    if password:
        from ..postgres.connect import with_default_password

        dsn = with_default_password(settings.config.dsn, password)
        settings = attrs.evolve(settings, config=attrs.evolve(settings.config, dsn=dsn))
    taken = sorted(name for name, value in env.items() if _is_secret(name, value))
    for name in taken:
        del env[name]
    return settings, taken


def _is_secret(name: str, value: str) -> bool:
    if name in _ALWAYS or name in _SECRET_OPTIONS:
        return True
    return name.startswith("RELAY_") and bool(find_secrets(value))
