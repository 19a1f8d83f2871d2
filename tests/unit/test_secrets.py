"""Finding and masking secrets: whatever a password holds, masked text never shows it."""

from __future__ import annotations

import re

import pytest

from relay.secrets import find_secrets, mask, mask_url, url_origin

# Every delimiter a password may hold unencoded, and the pieces it cuts a password into.
DELIMITERS = ["/", "@", "?", "#", ":", "%", " ", "'", '"', "&", "=", "%40", "@@", "/@?#"]
PASSWORDS = [
    password
    for delimiter in DELIMITERS
    for password in (f"s3cr{delimiter}etpw", f"{delimiter}s3cretpw", f"s3cretpw{delimiter}")
]
# (URL template, what must still show after masking)
URLS = [
    ("postgresql://postgres:{}@127.0.0.1:5432/db", "127.0.0.1:5432/db"),
    ("postgres://app:{}@[::1]:5433/orders?sslmode=require", "[::1]:5433/orders?sslmode=require"),
    ("https://u:{}@hooks.example.com:8443/path?x=1", "hooks.example.com:8443/path?x=1"),
    ("http://u:{}@127.0.0.1/hook", "127.0.0.1/hook"),
    ("nats://relay:{}@h1:4222,h2:4223?subject=x", "h1:4222,h2:4223?subject=x"),
    ("redis://app:{}@127.0.0.1:6379/0?stream=s", "127.0.0.1:6379/0?stream=s"),
    ("rediss://:{}@redis.internal:6380/3", "redis.internal:6380/3"),
    ("amqp://guest:{}@127.0.0.1:5672/vhost?exchange=x", "127.0.0.1:5672/vhost?exchange=x"),
]


def assert_hidden(password: str, text: str) -> None:
    assert password not in text, text
    for piece in re.split(r"[/?#@:&=\s'\"%]", password):
        if len(piece) >= 4:
            assert piece not in text, text


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(("template", "shown"), URLS)
def test_a_url_password_with_any_delimiter_never_shows(
    template: str, shown: str, password: str
) -> None:
    url = template.format(password)
    masked = mask_url(url)
    assert_hidden(password, masked)
    assert masked.endswith(f"***@{shown}")


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(("template", "shown"), URLS)
def test_text_quoting_a_url_never_shows_its_password(
    template: str, shown: str, password: str
) -> None:
    url = template.format(password)
    masked = mask(f"cannot connect to {url!r}: refused", find_secrets(url))
    assert_hidden(password, masked)
    assert shown in masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:hunter/22@127.0.0.1:5432/db",
        "https://u:pa/ss?w@host/path",
        "redis://u:a@b/c@127.0.0.1:6379/0",
    ],
)
def test_free_text_is_masked_by_shape_alone(url: str) -> None:
    """Without being told the secrets: a URL in text is masked up to its last `@`."""
    masked = mask(f"error at {url} while connecting")
    assert masked.startswith("error at ") and masked.endswith(" while connecting")
    assert_hidden(url.split("://")[1].rsplit("@", 1)[0].split(":", 1)[1], masked)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://u:p@host/x?mail=a@b", "https://u:***@host/x?mail=a@b"),
        ("rediss://app:hunter2@h/0?stream=a@b", "rediss://app:***@h/0?stream=a@b"),
        ("redis://app:hun@ter2@h:1", "redis://app:***@h:1"),
        ("postgresql://u:a@b?c@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:a@b#c@h/db", "postgresql://u:***@h/db"),
    ],
)
def test_an_at_in_the_query_is_the_querys_not_the_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://app@127.0.0.1", "redis://app@127.0.0.1"),
        ("amqp://guest@h/", "amqp://guest@h/"),
        ("postgresql://me@h/db", "postgresql://me@h/db"),
        ("nats://t0ken@h", "nats://***@h"),
        ("https://apikey@h/hook", "https://***@h/hook"),
    ],
)
def test_a_lone_user_name_is_masked_only_where_it_is_a_credential(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize("name", ["password", "PASSWORD", "sslpassword", "token", "secret"])
@pytest.mark.parametrize("value", ["s3cretpw", "s3cr&etpw", "s3cr#etpw", "s3cr etpw", "s3cr@etpw"])
def test_secret_query_parameters_are_masked_up_to_the_next_parameter(name: str, value: str) -> None:
    url = f"postgresql://127.0.0.1:5432/db?{name}={value}&sslmode=require"
    masked = mask_url(url)
    assert masked == f"postgresql://127.0.0.1:5432/db?{name}=***&sslmode=require"
    assert value in find_secrets(url)


CONNINFOS = [
    ("password='a b' host=x", "a b"),
    ("host=x port=5432 password='it\\'s a secret' dbname=db", "it's a secret"),
    ("host=x port=5432 dbname=db password=s3cr/et@pw#x", "s3cr/et@pw#x"),
    ("host=x password = 's3cr\"et pw' port=5432 dbname=db", 's3cr"et pw'),
    ("host=x port=5432 dbname=db sslpassword=k3y'word9", "k3y'word9"),
    ("host=x password='unterminated s3cret", "unterminated s3cret"),
]


@pytest.mark.parametrize(("conninfo", "password"), CONNINFOS)
def test_a_conninfo_password_never_shows(conninfo: str, password: str) -> None:
    assert password in find_secrets(conninfo)
    for masked in (mask(conninfo), mask(f"bad: {conninfo}!", find_secrets(conninfo))):
        assert_hidden(password, masked)
        for kept in ("host=x", "port=5432", "dbname=db"):
            if kept in conninfo:
                assert kept in masked


def test_find_secrets_finds_the_password_decoded_and_in_pieces() -> None:
    assert find_secrets("postgresql://u:p%40ss%2Fword@h/db") == [
        "p%40ss%2Fword",
        "p@ss/word",
        "word",
    ]


def test_find_secrets_of_a_dsn_without_a_password_is_empty() -> None:
    assert find_secrets("postgresql://me@127.0.0.1:5432/db") == []
    assert find_secrets("host=127.0.0.1 user=me dbname=db") == []
    assert find_secrets("") == []


def test_known_secrets_are_masked_longest_first() -> None:
    assert mask("abcdef and abcd", ["abcd", "abcdef"]) == "*** and ***"


@pytest.mark.parametrize(
    "name",
    [
        "sig",
        "signature",
        "code",
        "key",
        "auth",
        "token",
        "api_key",
        "api-key",
        "x-auth",
        "access_token",
        "AccessKey",
        "SIG",
    ],
)
def test_query_parameters_named_like_secrets_are_masked(name: str) -> None:
    url = f"https://hooks.example.com/h?x=1&{name}=S3CR3TV4L&y=2"
    assert mask_url(url) == f"https://hooks.example.com/h?x=1&{name}=***&y=2"
    assert "S3CR3TV4L" in find_secrets(url)
    assert "S3CR3TV4L" not in mask(f"posting to {url} failed")


@pytest.mark.parametrize("name", ["routing_key", "subject", "stream", "exchange", "zipcode"])
def test_ordinary_parameters_stay_shown(name: str) -> None:
    url = f"amqp://127.0.0.1/v?{name}=orders.{{topic}}"
    assert mask_url(url) == url
    assert find_secrets(url) == []


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        (
            "https://u:hunter2@hooks.example.com:8443/hooks/T0K3N?sig=S1G#frag",
            "https://hooks.example.com:8443",
        ),
        ("https://hooks.example.com/api/T0K3N", "https://hooks.example.com"),
        ("http://127.0.0.1:9/?code=C0DE", "http://127.0.0.1:9"),
        ("nats://T0K3N@127.0.0.1:4222?subject=x", "nats://127.0.0.1:4222"),
        ("nats://relay:pw@h1:4222,h2:4223/x", "nats://h1:4222,h2:4223"),
        ("redis://:p@ss/w0rd@[::1]:6379/0?stream=s", "redis://[::1]:6379"),
        ("amqp://guest:guest@127.0.0.1:5672/vhost?exchange=x", "amqp://127.0.0.1:5672"),
        ("stdout", "stdout"),
        ("python:app.sinks:make?token=T0K3N", "python:app.sinks:make"),
        ("", ""),
    ],
)
def test_url_origin_shows_scheme_host_and_port_only(url: str, origin: str) -> None:
    assert url_origin(url) == origin
    assert url_origin(origin) == origin  # shown twice, the same


@pytest.mark.parametrize("password", PASSWORDS)
def test_url_origin_never_shows_a_password(password: str) -> None:
    shown = url_origin(f"https://u:{password}@hooks.example.com:8443/x?y=1")
    assert_hidden(password, shown)
