"""Finding and masking secrets in DSNs, sink URLs and the text that may quote them.

One rule, for libpq URLs and conninfo strings and sink URLs alike, each secret masked as `***`:

- A URL's user information ends at the last `@` before its host. A password may hold any
  delimiter unencoded (`/ ? # @ : %`, spaces, quotes), so that is the last `@`, unless the later
  ones all sit in the query of a well-formed reading with no user information or one ending at an
  earlier `@` (`https://u:p@h/x?to=a@b`). Only a password holding `?name=value` after something
  that reads as a host can be cut in the wrong place.
- The password follows the user name's first `:`. A lone user name is a credential where the
  scheme sends it as one (a NATS token, HTTP basic authentication), else a name, shown.
- Values named like secrets (`password`, `sslpassword`, `token`, `secret`, `signature`, `auth`,
  `api_key`, and `sig`, `code`, `key` as whole names) are too: in a URL's query up to the next
  `name=`, in conninfo quoted or up to a space.
- Where a URL is only named (a route's destination in status, metrics, logs), `url_origin` shows
  its scheme, host and port alone: a path may hold a token too (`/hooks/T0K3N`).
- A Standard Webhooks secret is masked by its shape wherever it shows: `whsec_` then base64.

Text that may quote a secret in pieces (a parser's error, a log line) is masked with
`find_secrets` of the DSN or URL it came from.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

MASK = "***"

_TOKEN_SCHEMES = frozenset({"nats", "http", "https"})
# A name ending in one of the long words, or one of the short words alone: `?key=` and `?code=`
# are secrets (an API key, a Functions key, a signed URL's `sig=`), `routing_key=` is not.
_SECRET_NAME = (
    r"(?:[\w.-]*(?:password|passwd|pwd|token|secret|signature|auth|api[_-]?key|access[_-]?key)"
    r"|sig|code|key)"
)
# A query value runs to the next parameter: the secret may hold `&` or `#` unencoded.
_SECRET_PARAMETER = re.compile(
    rf"(?P<name>[?&]{_SECRET_NAME}=)(?P<value>(?:(?!&[\w.-]+=).)*)", re.IGNORECASE | re.DOTALL
)
_MASKED_PARAMETER = rf"\g<name>{MASK}"
# libpq's conninfo: a value in single quotes (backslash escapes), else up to a space.
_SECRET_KEYWORD = re.compile(
    rf"(?P<name>\b{_SECRET_NAME}\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|\S+)",
    re.IGNORECASE | re.DOTALL,
)
# In free text a URL runs to the next space, and is masked as a URL.
_URL_OR_KEYWORD = re.compile(
    rf"(?P<url>\b[A-Za-z][A-Za-z0-9+.-]*://\S+)|{_SECRET_KEYWORD.pattern}",
    re.IGNORECASE | re.DOTALL,
)
_HOST = r"(?:\[[^\]\s/?#@]*\]|[^\[\]\s/?#@:,]*)(?::\d*)?"
# What may follow the user information: hosts, a path, a query of name=value pairs, a fragment.
_AFTER_USERINFO = re.compile(
    rf"{_HOST}(?:,{_HOST})*(?:/[^?#]*)?"
    r"(?:\?(?P<query>[\w.-]+=[^&#]*(?:&[\w.-]+=[^&#]*)*))?(?:#.*)?",
    re.DOTALL,
)
_HOSTS = re.compile(rf"{_HOST}(?:,{_HOST})*")
_STANDARD_WEBHOOKS_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+")
_DELIMITERS = re.compile(r"[/?#@:&=\s'\"]")
_SHORTEST_PIECE = 4  # shorter pieces of a secret are too likely to be ordinary words


def mask_url(url: str) -> str:
    """`url` with its password (or token) and its secret query parameters replaced by `***`."""
    split = _split(url)
    if split is None:
        return _SECRET_PARAMETER.sub(_MASKED_PARAMETER, url)
    scheme, shown, _, after = split
    return f"{scheme}://{shown}@{_SECRET_PARAMETER.sub(_MASKED_PARAMETER, after)}"


def url_origin(url: str) -> str:
    """`scheme://host[:port]` of `url`: no user information, path, query or fragment, which may
    all hold a secret. Text with no `://` (`stdout`, `python:module:callable`) is shown to its
    first `?` or `#`, masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return mask(re.split(r"[?#]", url, maxsplit=1)[0])
    split = _split(url)
    after = rest if split is None else split[3]
    hosts = _HOSTS.match(after)
    return f"{scheme}://{hosts[0] if hosts else ''}"


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets`, and whatever the module's rule finds, replaced by `***`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _STANDARD_WEBHOOKS_SECRET.sub(f"whsec_{MASK}", text)
    return _URL_OR_KEYWORD.sub(
        lambda found: mask_url(found["url"]) if found["url"] else f"{found['name']}{MASK}", text
    )


def find_secrets(dsn_or_url: str) -> list[str]:
    """The secrets a DSN or URL holds, to mask wherever they may be quoted.

    Each as written and decoded, and every piece of it between delimiters (a parser may quote one
    alone); longest first, so that masking a piece cannot leave the rest of a longer one behind.
    """
    if "://" in dsn_or_url:
        found = {match["value"] for match in _SECRET_PARAMETER.finditer(dsn_or_url)}
        if (split := _split(dsn_or_url)) and split[2] is not None:
            found.add(split[2])
    else:  # conninfo: a quoted value with its backslash escapes undone
        keywords = (match["value"] for match in _SECRET_KEYWORD.finditer(dsn_or_url))
        found = {
            re.sub(r"(?s)\\(.)", r"\1", k[1:].removesuffix("'")) if k[0] == "'" else k
            for k in keywords
        }
    found |= {urllib.parse.unquote(secret) for secret in found}
    found |= {p for s in found for p in _DELIMITERS.split(s) if len(p) >= _SHORTEST_PIECE}
    return sorted((s for s in found if s), key=lambda s: (-len(s), s))


def _split(url: str) -> tuple[str, str, str | None, str] | None:
    """`url`'s scheme, its user information as shown masked, its secret (None for a lone user
    name) and what follows the user information; None when it has none."""
    scheme, sep, rest = url.partition("://")
    at = _userinfo_end(rest) if sep else -1
    if at < 0:
        return None
    user, colon, password = rest[:at].partition(":")
    if colon:
        return scheme, f"{user}:{MASK}", password, rest[at + 1 :]
    if scheme.lower() in _TOKEN_SCHEMES:
        return scheme, MASK, user, rest[at + 1 :]
    return scheme, user, None, rest[at + 1 :]


def _userinfo_end(rest: str) -> int:
    """The index of the `@` that ends the user information in `rest` (a URL after `://`), or -1."""
    ats = [i for i, c in enumerate(rest) if c == "@"]
    for at in [-1, *ats[:-1]]:  # -1: no user information at all
        reading = _AFTER_USERINFO.fullmatch(rest, at + 1)
        query = len(rest) if reading is None or reading["query"] is None else reading.start("query")
        if all(later > query for later in ats if later > at):
            return at  # the later `@`s are in this reading's query, not in a password
    return ats[-1] if ats else -1


def mask_quoted(text: str) -> str:
    """A parser's message with every quoted value masked: a URL parser quotes the piece it could
    not read (`Invalid port: 'pa'`), and with an unencoded delimiter in a password that piece is
    a piece of the password, too short to be found as one."""
    return _QUOTED.sub(f"'{MASK}'", text)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
