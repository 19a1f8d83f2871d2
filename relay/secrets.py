"""Masking secrets in text: in the core, since the adapter masks its own error messages too."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_IN_KEYWORDS = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets`, and anything shaped like a DSN password, replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    return _PASSWORD_IN_KEYWORDS.sub(r"\1***", text)
