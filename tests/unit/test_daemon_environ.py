"""Relay's secrets leave the environment before a `python:` sink is imported."""

from __future__ import annotations

from relay import Config
from relay.daemon.environ import take_secrets
from relay.daemon.settings import Settings
from relay.postgres.connect import with_default_password


def test_relays_secrets_are_taken_and_the_rest_left() -> None:
    environ = {
        "RELAY_DSN": "postgresql://app:pw@db/app",
        "DATABASE_URL": "postgresql://app:pw@db/app",
        "RELAY_WEBHOOK_SECRET": "s3cret",
        "RELAY_SINK": "amqp://relay:hunter22@broker/",
        "RELAY_BATCH_SIZE": "100",
        "RELAY_SINK_PLAIN": "https://hooks.example/in",
        "PATH": "/usr/bin",
        "APP_TOKEN": "the application's own",
    }
    settings = Settings(Config(dsn="postgresql://app:pw@db/app"))
    kept, taken = take_secrets(settings, environ)
    assert taken == ["DATABASE_URL", "RELAY_DSN", "RELAY_SINK", "RELAY_WEBHOOK_SECRET"]
    assert set(environ) == {"RELAY_BATCH_SIZE", "RELAY_SINK_PLAIN", "PATH", "APP_TOKEN"}
    assert kept == settings


def test_pgpassword_goes_into_a_dsn_that_names_no_password() -> None:
    environ = {"PGPASSWORD": "from-env"}
    kept, taken = take_secrets(Settings(Config(dsn="host=db dbname=app")), environ)
    assert taken == ["PGPASSWORD"]
    assert environ == {}
    assert "password=from-env" in kept.config.dsn
    assert "host=db" in kept.config.dsn


def test_a_dsn_with_a_password_of_its_own_keeps_it() -> None:
    dsn = "postgresql://app:own@db/app"
    assert with_default_password(dsn, "from-env") == dsn
    assert with_default_password("not a dsn ='", "x") == "not a dsn ='"
