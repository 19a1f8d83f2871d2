"""The `Relay-Signature` scheme: `t=<unix ts>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>`."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from relay.sinks import sign, verify_signature

SECRET = "whsec_test"
BODY = b'{"id":1,"topic":"t","key":null,"payload":{"a": 1}}'
NOW = 1_700_000_000


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    digest = hmac.new(b"whsec_test", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, NOW) == f"t=1700000000,v1={digest}"


def test_a_str_secret_is_its_utf8_bytes() -> None:
    assert sign("s\u00e9cret", BODY, NOW) == sign("s\u00e9cret".encode(), BODY, NOW)


def test_a_fresh_signature_verifies() -> None:
    assert verify_signature(SECRET, sign(SECRET, BODY, NOW), BODY, now=NOW + 299)
    assert verify_signature(SECRET.encode(), sign(SECRET, BODY, NOW), BODY, now=NOW - 299)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("another secret", BODY, NOW),
        (SECRET, BODY + b" ", NOW),
        (SECRET, BODY, NOW + 301),
        (SECRET, BODY, NOW - 301),
    ],
    ids=["wrong secret", "changed body", "too old", "from the future"],
)
def test_a_wrong_or_stale_signature_does_not_verify(secret: str, body: bytes, now: int) -> None:
    assert not verify_signature(secret, sign(SECRET, BODY, NOW), body, now=now)


def test_the_tolerance_is_configurable_and_can_be_switched_off() -> None:
    header = sign(SECRET, BODY, NOW)
    assert not verify_signature(SECRET, header, BODY, tolerance=10, now=NOW + 11)
    assert verify_signature(SECRET, header, BODY, tolerance=None, now=NOW + 10**6)


def test_the_timestamp_defaults_to_the_wall_clock() -> None:
    import time

    assert verify_signature(SECRET, sign(SECRET, BODY, int(time.time())), BODY)
    assert not verify_signature(SECRET, sign(SECRET, BODY, NOW), BODY)


def test_any_matching_v1_verifies() -> None:
    """A receiver rotating secrets may get a signature per secret."""
    good = sign(SECRET, BODY, NOW).split(",")[1]
    header = f"t={NOW}, v1={'0' * 64}, {good}"
    assert verify_signature(SECRET, header, BODY, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={'0' * 64}",
        f"t=abc,v1={'0' * 64}",
        f"t=-5,v1={'0' * 64}",
        f"t={NOW},t={NOW},{sign(SECRET, BODY, NOW).split(',')[1]}",
        f"t={NOW}",
        f"t={NOW},v1=\u00e9",
    ],
)
def test_a_malformed_header_does_not_verify(header: str) -> None:
    assert not verify_signature(SECRET, header, BODY, now=NOW)
