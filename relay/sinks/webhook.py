"""The webhook sink: one signed HTTP POST per event.

Each request carries:

- the body: the event as one JSON object (`encode_event`: the same object as a `stdout` line, the
  payload's bytes as PostgreSQL sent them);
- `Content-Type: application/json`;
- `Idempotency-Key: <event id>`: the same on every retry of the event, so a receiver deduplicates;
- `Relay-Signature: t=<timestamp>,v1=<signature>` when a secret is configured, where `timestamp`
  is the Unix time of sending in whole seconds and `signature` is the lowercase hex
  HMAC-SHA256, keyed with the secret's UTF-8 bytes, of `f"{timestamp}.".encode() + body`.
  A receiver recomputes it over the raw body it received (before parsing it), compares in
  constant time and rejects stale timestamps to stop replays: `verify_signature` does all three.
  With `SinkOptions.signature="standard-webhooks"` the Standard Webhooks headers sign instead
  (`webhook-id`, `webhook-timestamp`, `webhook-signature`: `relay.sinks.standard_webhooks`).

In the CloudEvents formats (`SinkOptions.format`, see `relay.sinks.cloudevents`) the body is the
payload alone with the attributes as `ce-*` headers and `Content-Type: application/json`
(binary mode), or the JSON event format as `application/cloudevents+json` (structured mode);
`Idempotency-Key` and the signature are sent as in relay's own format.

The URL's path may hold `{topic}`: each event goes to the URL with its topic put there as one
path segment, percent-encoded (`/` included, so a topic never climbs out of its segment; a topic
of dots is encoded too, as `.` and `..` would be resolved away). An empty topic makes no segment:
a permanent failure. Any other `{...}`, or `{topic}` outside the path, is refused when the sink
is made. Key order holds across topics: a key's events go one after the other whatever their URL.

The answer decides the event's fate: 2xx delivered; 408, 429, any 5xx, a timeout or a connection
error a retryable failure; any other 4xx a permanent one (the drainer buries the event at once);
anything else (a 3xx: redirects are not followed) retryable, as the endpoint is likely misconfigured
and can be fixed before the event runs out of attempts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import cast

import attrs
import httpx
import trio

from ..errors import ConfigError
from ..ports import OutboxEvent
from ..secrets import mask_quoted, mask_url
from . import standard_webhooks
from .cloudevents import STRUCTURED_CONTENT_TYPE, CloudEvents, Unmappable
from .encoding import encode_event
from .lanes import Failure, deliver_in_lanes
from .lifetime import NetworkSink, close_bounded
from .options import SinkOptions

SIGNATURE_HEADER = "Relay-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300.0
"""Seconds a signature's timestamp may be away from the receiver's clock."""

TOPIC = "{topic}"
_PLACEHOLDER = re.compile(r"\{[^{}/?#]*\}|[{}]")
_PATH = re.compile(r"[^/?#]*(?P<path>[^?#]*)")  # after `scheme://`: the authority, then the path
_USER_AGENT = "relay-webhook"
_DETAIL_BYTES = 200  # of an error answer's body, kept for `last_error`
_DRAIN_LIMIT = 64 * 1024  # past this an answer's body is dropped with its connection


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The `Relay-Signature` header value for `body` sent at Unix time `timestamp`."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str | bytes,
    header: str,
    body: bytes,
    tolerance: float | None = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """Whether `header` is a valid `Relay-Signature` of `body` under `secret`.

    Args:
        secret: the secret the relay signs with.
        header: the `Relay-Signature` header as received.
        body: the request body exactly as received, before any parsing.
        tolerance: seconds the signed timestamp may differ from `now`; None accepts any age.
        now: the receiver's Unix time; defaults to `time.time()`.

    Returns:
        True when one `v1` signature matches and the timestamp is fresh; False for anything else,
        a malformed header included.
    """
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep and name == "t":
            timestamps.append(value)
        elif sep and name == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        return False
    timestamp = int(timestamps[0])
    now = time.time() if now is None else now
    if tolerance is not None and abs(now - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body).encode()
    return any(hmac.compare_digest(expected, given.encode()) for given in signatures)


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode() if isinstance(secret, str) else secret, digestmod=hashlib.sha256)
    mac.update(b"%d." % timestamp)
    mac.update(body)
    return mac.hexdigest()


def _check_placeholders(value: str) -> None:
    """Only `{topic}`, only in the path: anything else would be sent as the literal `%7B...%7D`."""
    shown = mask_url(value)  # a password may hold braces; it holds no placeholder
    for found in _PLACEHOLDER.finditer(shown):
        if found[0] != TOPIC:
            raise ConfigError(
                "sink",
                f"unknown placeholder {found[0]!r} in the webhook URL: only {TOPIC} is replaced"
                " (percent-encode a literal brace as %7B or %7D)",
            )
    path = _PATH.match(shown.partition("://")[2])
    if shown.count(TOPIC) != (0 if path is None else path["path"].count(TOPIC)):
        raise ConfigError("sink", f"{TOPIC} may only be in the webhook URL's path")


def topic_segment(topic: str) -> str | None:
    """`topic` as one path segment, percent-encoded; None for an empty topic (no segment)."""
    if not topic:
        return None
    if topic.strip(".") == "":  # `.` and `..` are resolved away by any URL parser
        return "%2E" * len(topic)
    return urllib.parse.quote(topic, safe="")


def _check_url(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    _check_placeholders(value)
    try:
        parsed = httpx.URL(value.replace(TOPIC, "topic"))
        # httpx quietly percent-encodes a space in a host and takes any port number.
        if any(c.isspace() for c in value) or not 0 < (parsed.port or 80) < 65536:
            raise httpx.InvalidURL("a space or a port out of range")
    except httpx.InvalidURL as exc:
        raise ConfigError(
            "sink", f"not a valid URL: {mask_url(value)!r} ({mask_quoted(str(exc))})"
        ) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            "sink",
            f"a webhook needs an http:// or https:// URL with a host, got {mask_url(value)!r}",
        )


@attrs.define(eq=False)
class WebhookSink(NetworkSink[httpx.AsyncClient]):
    """POSTs each event to `url`; events of different keys concurrently, of one key in order.

    Use it as an async context manager: entering opens the connection pool, leaving closes it (the
    drainer does both). Used without `async with`, each batch opens and closes its own connections.

    `deliver` sends the events of each key one at a time, in the order given, and at most
    `options.max_concurrency` requests at once overall; events without a key are independent of
    each other. After an event of a key fails, the later events of that key in the batch are not
    sent. When any event failed, `deliver` raises `PartialDelivery` naming every event not delivered
    (the held-back ones with the reason `held behind event N`), with the permanent failures in its
    `permanent` set; the others count as delivered. `Cancelled` passes through.

    Attributes:
        url: the endpoint; `{topic}` in its path is each event's topic (see the module's
            documentation); user information in it is sent as HTTP basic authentication. The
            `HTTP(S)_PROXY`, `NO_PROXY` and `SSL_CERT_FILE` variables apply, as in httpx.
        options: secret, timeout, concurrency, extra headers, TLS.
        clock: Unix time for the signature's timestamp. Wall-clock time, not trio's: the receiver
            compares it with its own clock.
        transport: an httpx transport to use instead of the network, for tests.
    """

    url: str = attrs.field(validator=_check_url, repr=lambda url: repr(mask_url(url)))
    options: SinkOptions = attrs.field(factory=SinkOptions)
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False)
    transport: httpx.AsyncBaseTransport | None = attrs.field(default=None, repr=False)
    _limiter: trio.CapacityLimiter = attrs.field(init=False, repr=False)
    _verify: bool | ssl.SSLContext = attrs.field(init=False, repr=False)
    _cloudevents: CloudEvents | None = attrs.field(init=False, repr=False)
    _standard_key: bytes | None = attrs.field(init=False, repr=False)

    @_cloudevents.default
    def _read_format(self) -> CloudEvents | None:
        return self.options.cloudevents

    @_standard_key.default
    def _read_standard_key(self) -> bytes | None:
        secret = self.options.secret
        if secret is None or self.options.signature != standard_webhooks.SCHEME:
            return None
        return standard_webhooks.secret_key(secret)  # checked by SinkOptions already

    @_limiter.default
    def _make_limiter(self) -> trio.CapacityLimiter:
        return trio.CapacityLimiter(self.options.max_concurrency)

    @_verify.default
    def _load_certificates(self) -> bool | ssl.SSLContext:
        # Here rather than when the drainer enters the sink: a bad file is a configuration error.
        if not self.options.verify_tls or self.options.ca_file is None:
            return self.options.verify_tls
        try:
            return ssl.create_default_context(cafile=self.options.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "sink.ca_file", f"cannot load {self.options.ca_file}: {exc}"
            ) from None

    uses_asyncio = False  # httpx runs on trio itself

    async def _connect(self, stack: contextlib.AsyncExitStack) -> httpx.AsyncClient:
        client = self._open_client()
        stack.push_async_callback(close_bounded, client.aclose)
        return client

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Send the events; raise `PartialDelivery` if any was not delivered."""
        if self._session is not None:
            await self._deliver(self._session, events)
        else:
            async with self._open_client() as client:
                await self._deliver(client, events)

    def _open_client(self) -> httpx.AsyncClient:
        options = self.options
        headers = httpx.Headers({"User-Agent": _USER_AGENT})
        headers.update(httpx.Headers(list(options.headers)))  # may replace User-Agent
        headers["Content-Type"] = "application/json"
        return httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(options.timeout),
            limits=httpx.Limits(
                max_connections=options.max_concurrency,
                max_keepalive_connections=options.max_concurrency,
            ),
            verify=self._verify,
            follow_redirects=False,
            transport=self.transport,
        )

    async def _deliver(self, client: httpx.AsyncClient, events: Sequence[OutboxEvent]) -> None:
        await deliver_in_lanes(events, functools.partial(self._post, client), self._limiter)

    async def _post(self, client: httpx.AsyncClient, event: OutboxEvent) -> Failure | None:
        url = self.url
        if TOPIC in url:
            segment = topic_segment(event.topic)
            if segment is None:
                return Failure(f"the topic is empty: it cannot fill {TOPIC}", permanent=True)
            url = url.replace(TOPIC, segment)
        try:
            body, headers = self._request(event)
        except Unmappable as exc:
            return Failure(str(exc), permanent=True)
        try:
            async with client.stream("POST", url, content=body, headers=headers) as response:
                try:
                    detail = await _read_detail(response)
                except httpx.TransportError:
                    detail = b""  # the status is the endpoint's answer; the body only explains it
                return _judge(response.status_code, detail, response.headers.get("Retry-After"))
        except httpx.TimeoutException as exc:
            return Failure(f"no answer within {self.options.timeout:g}s ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return Failure(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def _request(self, event: OutboxEvent) -> tuple[bytes, dict[str, str]]:
        """The body and the per-event headers: the format's, then the signature's."""
        cloudevents = self._cloudevents
        headers = {IDEMPOTENCY_HEADER: str(event.id)}
        if cloudevents is None:
            body = encode_event(event)
        elif cloudevents.structured:
            body = cloudevents.structured_json(event)
            headers["Content-Type"] = STRUCTURED_CONTENT_TYPE
        else:
            body = event.payload_json
            headers.update(cloudevents.http_headers(event))
        if self._standard_key is not None:
            signed = standard_webhooks.signed_headers(
                self._standard_key, str(event.id), int(self.clock()), body
            )
            headers.update(signed)
        elif self.options.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.options.secret, body, int(self.clock()))
        return body, headers


async def _read_detail(response: httpx.Response) -> bytes:
    """The start of the body; reading it all (up to a bound) lets the connection be reused."""
    kept = b""
    seen = 0
    # An async generator, though typed as an iterator: closed at once if we stop early.
    chunks = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            if len(kept) < _DETAIL_BYTES:
                kept += chunk[: _DETAIL_BYTES - len(kept)]
            seen += len(chunk)
            if seen > _DRAIN_LIMIT:
                break
    return kept


def _judge(status: int, detail: bytes, retry_after: str | None) -> Failure | None:
    if 200 <= status < 300:
        return None
    reason = f"HTTP {status}"
    if text := " ".join(detail.decode("utf-8", "replace").split()):
        reason += f": {text}"
    if retry_after:
        reason += f" (Retry-After: {retry_after})"
    return Failure(reason, permanent=400 <= status < 500 and status not in (408, 429))
