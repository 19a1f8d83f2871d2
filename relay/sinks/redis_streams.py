"""The Redis Streams sink: `XADD` each event to a stream named from its topic, without duplicates.

URL: `redis://[user:password@]host[:port][/db][?param=value&...]`, or `rediss://` for TLS (checked
against `SinkOptions.verify_tls` and `ca_file`). Port 6379 and db 0 by default. The parameters:

- `stream`: the stream's name, a template whose only placeholder is `{topic}` (`{{` and `}}` for
  literal braces); default `{topic}`.
- `maxlen`: trim each stream to about this many entries (`XADD ... MAXLEN ~ n`); default none.
- `dedup_ttl`: seconds an event's id is remembered, default 86400; 0 turns deduplication off.
- `dedup_prefix`: where those ids are remembered, default `relay:dedup:`.

Any other parameter is a configuration error. Each entry holds the fields `id` (decimal), `topic`,
`key` (left out when the event has none, so that None and "" stay apart), `headers` (JSON),
`payload` (the payload's JSON bytes exactly as PostgreSQL sent them, never decoded) and
`created_at` (ISO 8601); then `traceparent` and `tracestate` when the event's headers hold a valid
W3C trace context (see `relay.trace_context`), each only when present. In the CloudEvents formats
(`SinkOptions.format`) the field `cloudevent` holds the event in the JSON event format
(`relay.sinks.cloudevents`) in place of `payload`: Redis has no CloudEvents binding, so binary
mode writes the structured JSON too.

Duplicates: a Lua script adds an event only when the key `<dedup_prefix><stream>:<id>` does not
exist, and sets it (expiring after `dedup_ttl`) in the same atomic step. So a batch redelivered
after a lost commit or a lost answer adds nothing twice: exactly once within that window, and a
redelivery later than `dedup_ttl` can add a second copy. Two outboxes (two id sequences) writing
to one stream need different `dedup_prefix`es. Each key costs roughly 100 bytes while it lives.
With `dedup_ttl=0` delivery is at least once: a redelivered event is added again.

Key order: one script call takes the batch (cut into calls of about 4 MiB, sent one after the
other) and adds its events in the order given. Redis runs a script alone, its commands in order,
and keeps what it wrote even if it stops half-way. So whatever a call leaves in a stream is, for
each key, a prefix of that key's events in the call: when one `XADD` fails (say WRONGTYPE: the
stream's key holds a string), the script skips the later events of that key; when the call fails
as a whole (the connection lost, no answer in time, a script error), every event from that call
on counts as failed, though a prefix may be in. The relay retries a key from its first failed
event, in order; the script finds the ones already in marked as duplicates, and the rest land
after them. The script touches several streams in one call: a single Redis server (with or
without replicas), not Redis Cluster. `SinkOptions.max_concurrency` is unused: one call at a time.

Why a thread loop: the client runs on a plain asyncio loop (uvloop when installed) in a thread
the sink owns while it is entered, not on relay's trio-asyncio loop, where each of its callbacks
was a trip through trio's scheduler and the sink reached a fifth of the client's own speed (see
`relay.sinks.lifetime` and docs/brokers-performance.md). Its connections pack each call into
one buffer (`relay.sinks.redis_resp`), at a third of the cost of redis-py's own packing.

Delivered means the server answered; whether an entry survives a crash or a failover is up to its
persistence (`appendfsync`) and its asynchronous replication.

Errors: a lost connection (or one that cannot be opened, a failed login included) raises
`SinkUnavailable`, and the relay reconnects through its restart policy; no answer within
`SinkOptions.timeout`, an error of the whole call (OOM, READONLY, NOPERM) or of one `XADD` is a
retryable failure carrying Redis's message; a payload or headers larger than the server's
`proto-max-bulk-len` is a permanent one, as Redis would drop the connection on every try.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import Sequence
from typing import Any

import attrs
import redis  # before its submodules: missing, it is what the ImportError names
import redis.asyncio
import redis.exceptions
import trio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..errors import ConfigError, PartialDelivery, SinkUnavailable
from ..ports import OutboxEvent
from ..secrets import mask_url
from ..trace_context import find_trace_context
from .cloudevents import CloudEvents, Unmappable
from .encoding import headers_json
from .lifetime import NetworkSink, close_bounded
from .options import SinkOptions
from .redis_resp import use_fast_packing
from .redis_url import RedisTarget

_CHUNK_BYTES = 4 * 1024 * 1024  # per script call: Redis serves nobody else while a script runs
_BULK_LIMIT = 512 * 1024 * 1024  # proto-max-bulk-len's default, when CONFIG GET is not allowed
_HELD = -1
CLOUDEVENT_FIELD = "cloudevent"  # in place of `payload`, in the CloudEvents formats

# KEYS: stream, marker, per event. ARGV: ttl, maxlen or "", the payload's field name, then per
# event id, topic, key, keyed ("1"/"0"), headers, payload, created_at, traceparent, tracestate
# ("" when absent). Returns per event 1 added, 0 duplicate, -1 held behind an earlier failure of
# its key, or the error of its XADD.
_SCRIPT = """
local ttl = tonumber(ARGV[1])
local results, failed = {}, {}
for i = 1, #KEYS / 2 do
  local stream, marker = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 3 + (i - 1) * 9
  local key, keyed = ARGV[a + 3], ARGV[a + 4] == '1'
  if keyed and failed[key] then
    results[i] = -1
  elseif ttl > 0 and redis.call('EXISTS', marker) == 1 then
    results[i] = 0
  else
    local args = {stream}
    if ARGV[2] ~= '' then args = {stream, 'MAXLEN', '~', ARGV[2]} end
    for _, v in ipairs({'*', 'id', ARGV[a + 1], 'topic', ARGV[a + 2]}) do args[#args + 1] = v end
    if keyed then args[#args + 1] = 'key'; args[#args + 1] = key end
    for _, v in ipairs({'headers', ARGV[a + 5], ARGV[3], ARGV[a + 6], 'created_at',
                        ARGV[a + 7]}) do args[#args + 1] = v end
    if ARGV[a + 8] ~= '' then args[#args + 1] = 'traceparent'; args[#args + 1] = ARGV[a + 8] end
    if ARGV[a + 9] ~= '' then args[#args + 1] = 'tracestate'; args[#args + 1] = ARGV[a + 9] end
    local reply = redis.pcall('XADD', unpack(args))
    if type(reply) == 'table' and reply.err then
      results[i] = reply.err
      if keyed then failed[key] = true end
    else
      if ttl > 0 then redis.call('SET', marker, ARGV[a + 1], 'EX', ttl) end
      results[i] = 1
    end
  end
end
return results
"""


@attrs.frozen
class RedisSinkStatistics:
    """Entries added and redelivered events recognised as duplicates, since the sink was made."""

    added: int
    duplicates: int


@attrs.define
class _Outcome:
    """The failures of one `deliver` call, and the keys they block."""

    failures: dict[int, str] = attrs.field(factory=dict)
    permanent: set[int] = attrs.field(factory=set)
    blocking: dict[str, int] = attrs.field(factory=dict)  # key: its first failed event
    stopped: str | None = None  # why the rest of the batch is not sent

    def held(self, event: OutboxEvent) -> bool:
        if self.stopped is not None:
            self.failures[event.id] = self.stopped
        elif event.key is not None and event.key in self.blocking:
            self.failures[event.id] = f"held behind event {self.blocking[event.key]}"
        else:
            return False
        return True

    def fail(self, event: OutboxEvent, reason: str, *, permanent: bool = False) -> None:
        self.failures[event.id] = reason
        if permanent:
            self.permanent.add(event.id)
        if event.key is not None:
            self.blocking.setdefault(event.key, event.id)


_Entry = tuple[OutboxEvent, bytes, bytes]  # an event, its headers as JSON, its payload field


@attrs.define(eq=False)
class RedisStreamSink(NetworkSink[Any]):  # the session: the script, registered on the client
    """Adds each event to its topic's Redis stream, once, in key order, a batch per script call.

    Entering connects and checks the server (see `NetworkSink` for the lifetime). See the
    module's documentation for the URL, the entries and the errors.

    Attributes:
        url: `redis://` or `rediss://`, see the module's documentation.
        options: `timeout` bounds each call to Redis; `verify_tls` and `ca_file` apply to
            `rediss://`.
        max_payload: bytes a payload (or its headers' JSON) may have; None asks the server for its
            `proto-max-bulk-len` on entering.
    """

    url: str = attrs.field(repr=lambda url: repr(mask_url(url)))
    options: SinkOptions = attrs.field(factory=SinkOptions)
    max_payload: int | None = attrs.field(default=None, repr=False)
    target: RedisTarget = attrs.field(init=False, repr=False)
    _limit: int = attrs.field(default=_BULK_LIMIT, init=False, repr=False)
    _added: int = attrs.field(default=0, init=False, repr=False)
    _duplicates: int = attrs.field(default=0, init=False, repr=False)
    _cloudevents: CloudEvents | None = attrs.field(init=False, repr=False)

    @_cloudevents.default
    def _read_format(self) -> CloudEvents | None:
        return self.options.cloudevents

    @target.default
    def _parse(self) -> RedisTarget:
        target = RedisTarget.from_url(self.url)
        if target.tls and self.options.verify_tls and self.options.ca_file is not None:
            try:  # here, not on entering: a bad file is a configuration error
                ssl.create_default_context(cafile=self.options.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    "sink.ca_file", f"cannot load {self.options.ca_file}: {exc}"
                ) from None
        return target

    @property
    def _at(self) -> str:
        return f"Redis at {self.target.host}:{self.target.port}"

    def statistics(self) -> RedisSinkStatistics:
        """What the sink has written so far."""
        return RedisSinkStatistics(added=self._added, duplicates=self._duplicates)

    async def _connect(self, stack: contextlib.AsyncExitStack) -> Any:
        target, options = self.target, self.options
        client = redis.asyncio.Redis(
            host=target.host,
            port=target.port,
            db=target.db,
            username=target.username,
            password=target.password,
            ssl=target.tls,
            ssl_cert_reqs="required" if options.verify_tls else "none",
            ssl_check_hostname=options.verify_tls,
            ssl_ca_certs=options.ca_file,
            # Trio's deadline bounds each answer, so that a timeout is always ours (retryable),
            # never a race with the client's (which would drop the connection).
            socket_timeout=None,
            socket_connect_timeout=options.timeout,
            # The relay retries and reconnects; the client's own retries would only delay that.
            retry=Retry(NoBackoff(), 0),
            client_name="relay",
        )
        use_fast_packing(client)
        stack.push_async_callback(close_bounded, functools.partial(self._aio.run, client.aclose))
        limit = await self._ask_limit(client)
        self._limit = limit if self.max_payload is None else self.max_payload
        return client.register_script(_SCRIPT)

    async def _ask_limit(self, client: Any) -> int:
        """The server's `proto-max-bulk-len`; this first command also checks the connection."""
        try:
            with trio.fail_after(self.options.timeout):
                reply = await self._aio.run(client.config_get, "proto-max-bulk-len")
        except trio.TooSlowError:
            raise SinkUnavailable(
                f"{self._at}: no answer within {self.options.timeout:g}s"
            ) from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise SinkUnavailable(f"{self._at}: {exc}") from None
        except redis.exceptions.ResponseError:
            return _BULK_LIMIT  # CONFIG is often denied on managed servers
        # redis-py gives str keys and values (bytes in some versions and protocols).
        found = [v for k, v in reply.items() if k in ("proto-max-bulk-len", b"proto-max-bulk-len")]
        return int(found[0]) if found else _BULK_LIMIT

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Add the events; raise `PartialDelivery` naming those not added, `SinkUnavailable` when
        the connection is lost."""
        script = self._open()
        outcome = _Outcome()
        chunk: list[_Entry] = []
        size = 0
        for event in events:
            if outcome.held(event):
                continue
            headers = headers_json(event)
            try:
                payload = self._payload(event)
            except Unmappable as exc:
                outcome.fail(event, str(exc), permanent=True)
                continue
            if (largest := max(len(payload), len(headers))) > self._limit:
                reason = f"too large for Redis: {largest} bytes, the limit is {self._limit}"
                outcome.fail(event, reason, permanent=True)
                continue
            chunk.append((event, headers, payload))
            size += len(payload) + len(headers)
            if size >= _CHUNK_BYTES:
                await self._send(script, chunk, outcome)
                chunk, size = [], 0
        if chunk:
            await self._send(script, chunk, outcome)
        if outcome.failures:
            raise PartialDelivery(outcome.failures, permanent=outcome.permanent)

    @property
    def _payload_field(self) -> str:
        return "payload" if self._cloudevents is None else CLOUDEVENT_FIELD

    def _payload(self, event: OutboxEvent) -> bytes:
        """What the payload's field holds: the payload, or the whole CloudEvent (Redis has no
        CloudEvents binding, so both modes write the structured JSON)."""
        if self._cloudevents is None:
            return event.payload_json
        return self._cloudevents.structured_json(event)

    async def _send(self, script: Any, chunk: list[_Entry], outcome: _Outcome) -> None:
        target = self.target
        streams: dict[str, str] = {}
        keys: list[str] = []
        args: list[str | bytes | int] = [target.dedup_ttl, target.maxlen or "", self._payload_field]
        for event, headers, payload in chunk:
            if (stream := streams.get(event.topic)) is None:
                stream = streams[event.topic] = target.stream_for(event.topic)
            keys += [stream, f"{target.dedup_prefix}{stream}:{event.id}"]
            args += [event.id, event.topic, event.key or "", "0" if event.key is None else "1"]
            args += [headers, payload, event.created_at.isoformat()]
            trace = find_trace_context(event.headers)
            args += ["", ""] if trace is None else [trace.traceparent, trace.tracestate or ""]
        reason: str | None = None
        with trio.move_on_after(self.options.timeout) as scope:
            try:
                results = await self._aio.run(functools.partial(script, keys=keys, args=args))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                raise SinkUnavailable(f"{self._at}: {exc}") from None
            except redis.exceptions.RedisError as exc:  # OOM, READONLY, NOPERM, BUSY...
                reason = f"Redis: {exc}"
        if scope.cancelled_caught:
            reason = f"no answer from Redis within {self.options.timeout:g}s"
        if reason is not None:
            # Some of these may be in already: a retry finds them marked and keeps their place.
            outcome.stopped = f"not sent: an earlier call failed: {reason}"
            for event, *_ in chunk:
                outcome.fail(event, reason)
            return
        for (event, *_), result in zip(chunk, results, strict=True):
            if result == 1:
                self._added += 1
            elif result == 0:
                self._duplicates += 1
            elif result == _HELD and event.key is not None:
                outcome.failures[event.id] = f"held behind event {outcome.blocking[event.key]}"
            else:
                text = result.decode(errors="replace") if isinstance(result, bytes) else result
                outcome.fail(event, f"Redis: {text}")
