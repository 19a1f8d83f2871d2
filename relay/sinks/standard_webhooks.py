"""Webhook signatures in the Standard Webhooks scheme (standardwebhooks.com), for receivers that
verify with one of its libraries rather than relay's own `Relay-Signature`.

Each request carries:

- `webhook-id`: the event's id, the same on every retry (what a receiver deduplicates on);
- `webhook-timestamp`: the Unix time of sending, in whole seconds;
- `webhook-signature`: `v1,<signature>`, the base64 HMAC-SHA256 of `f"{id}.{timestamp}."` and
  the body, keyed with the secret's bytes: the base64 after the `whsec_` prefix, decoded.

A few lines of `hmac`, so relay needs no library to sign; the tests verify with the
`standardwebhooks` package, what receivers use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SCHEME = "standard-webhooks"
RELAY_SCHEME = "relay"
SCHEMES = (RELAY_SCHEME, SCHEME)
SECRET_PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)


def secret_key(secret: str) -> bytes:
    """The signing key a `whsec_<base64>` secret holds.

    Raises:
        ValueError: the secret has no `whsec_` prefix, or no base64 after it; the message never
            quotes the secret.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a Standard Webhooks secret starts with {SECRET_PREFIX}")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:  # padded or not, as the Standard Webhooks libraries take it
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a Standard Webhooks secret is {SECRET_PREFIX} then base64") from None
    if not key:
        raise ValueError(f"a Standard Webhooks secret holds a key after {SECRET_PREFIX}")
    return key


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers that sign `body`, sent at Unix time `timestamp`, under `key`."""
    mac = hmac.new(key, b"%b.%d." % (message_id.encode(), timestamp), hashlib.sha256)
    mac.update(body)
    signature = base64.b64encode(mac.digest()).decode()
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"v1,{signature}",
    }
