"""Standard Webhooks signatures, checked by the `standardwebhooks` package a receiver uses."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from relay import ConfigError
from relay.secrets import mask
from relay.sinks import SinkOptions
from relay.sinks.standard_webhooks import secret_key, signed_headers

KEY = b"\x00\xffkey with every byte \x80\x7f"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
NOW = 1_796_000_000


def verify(secret: str, body: bytes, headers: dict[str, str]) -> Any:
    # The library checks the timestamp against its own clock: sign with the real time.
    return Webhook(secret).verify(body, headers, json_parse=False)


@pytest.mark.parametrize(
    "body",
    [b'{"a":1}', b"", b"\xff\xfe not UTF-8", b"x" * 3_000_000, b'{"s":"\\n.\\u00e9."}'],
)
def test_the_package_verifies_what_relay_signs(body: bytes) -> None:
    headers = signed_headers(secret_key(SECRET), "41", int(time.time()), body)
    verify(SECRET, body, headers)  # raises when it does not verify
    assert headers["webhook-id"] == "41"
    assert headers["webhook-signature"].startswith("v1,")


def test_another_secret_or_body_or_id_does_not_verify() -> None:
    now = int(time.time())
    headers = signed_headers(secret_key(SECRET), "41", now, b"{}")
    other = "whsec_" + base64.b64encode(b"another key").decode()
    with pytest.raises(WebhookVerificationError):
        verify(other, b"{}", headers)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, b"{ }", headers)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, b"{}", {**headers, "webhook-id": "42"})


def test_the_timestamp_is_signed_and_sent() -> None:
    headers = signed_headers(secret_key(SECRET), "7", NOW, b"{}")
    assert headers["webhook-timestamp"] == str(NOW)
    later = signed_headers(secret_key(SECRET), "7", NOW + 1, b"{}")
    assert later["webhook-signature"] != headers["webhook-signature"]


def test_an_unpadded_secret_is_the_same_key() -> None:
    assert secret_key(SECRET.rstrip("=")) == KEY


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("s3cret-token", "starts with whsec_"),
        ("WHSEC_" + base64.b64encode(KEY).decode(), "starts with whsec_"),
        ("whsec_", "holds a key"),
        ("whsec_not base64!", "then base64"),
        ("whsec_abc\ndef", "then base64"),
        ("whsec_é", "then base64"),
    ],
)
def test_a_bad_secret_is_one_config_error_that_never_quotes_it(secret: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SinkOptions(secret=secret, signature="standard-webhooks")
    message = str(caught.value)
    assert caught.value.field == "sink.secret" and reason in message
    assert secret not in message or secret == "whsec_"  # the prefix alone holds nothing
    assert len(secret) < 12 or secret[6:] not in message
    assert "\n" not in message


def test_standard_webhooks_without_a_secret_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"sink\.signature: standard-webhooks signs with a secret"
    ):
        SinkOptions(signature="standard-webhooks")


@pytest.mark.parametrize("scheme", ["", "standard", "Standard-Webhooks", None])
def test_an_unknown_scheme_is_one_config_error(scheme: Any) -> None:
    with pytest.raises(ConfigError, match=r"sink\.signature: must be one of relay, standard-webh"):
        SinkOptions(secret=SECRET, signature=scheme)


def test_the_secret_is_not_in_the_options_repr() -> None:
    assert SECRET not in repr(SinkOptions(secret=SECRET, signature="standard-webhooks"))


@pytest.mark.parametrize(
    "text",
    [
        f"signing with {SECRET} failed",
        f"RELAY_WEBHOOK_SECRET={SECRET}",
        f"'{SECRET}'",
        "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 20).decode(),
    ],
)
def test_a_standard_webhooks_secret_is_masked_by_its_shape(text: str) -> None:
    masked = mask(text)
    assert "***" in masked
    assert SECRET[6:] not in masked and text.partition("whsec_")[2][:8] not in masked
