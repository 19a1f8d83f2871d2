"""Metrics, liveness and readiness over HTTP: what `relay run --metrics-addr HOST:PORT` serves.

- `/metrics`: the Prometheus exposition of a registry of the relay's own, never the process-wide
  one, so a process (or a test) can run several relays. Counters are read from
  `RelayHandle.statistics()` at scrape time, so there is one bookkeeping, the relay's; the
  histograms are fed by a batch observer on the drainer; the backlog gauges are asked of the
  outbox at scrape time.
- `/healthz`: 200 while the process runs the relay.
- `/readyz`: 200 when nothing is waited for, the listener is connected and the drainer has made
  progress recently (see `drain_deadline`), else 503 with the reason (e.g. the database's outage).

The server is `relay.daemon.http`'s (hypercorn's protocol, connections capped), run in the caller's
nursery: cancelling that stops it. While the relay starts, `StartingApp` answers in its place.
"""

from __future__ import annotations

import datetime
import logging
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping

import attrs
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from ..config import Config
from ..drainer_reports import BatchReport, DrainerStatistics
from ..outages import Outage, Outages
from ..ports import Backlog
from ..runtime import RelayHandle, RelayStatistics
from .http import listen, serve_asgi, shown

logger = logging.getLogger(__name__)

# Seconds a scrape waits for the outbox's backlog; past that it answers without the backlog gauges.
BACKLOG_TIMEOUT = 5.0

# A batch takes from a millisecond up to `delivery_timeout` (30 s by default) and its commit.
BATCH_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# An event's lag runs from a NOTIFY's milliseconds to hours of retries.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)


# -- readiness -------------------------------------------------------------------------------------


@attrs.frozen
class Readiness:
    """Whether the relay is ready, and why (or why not) in a few words."""

    ready: bool
    reason: str


def drain_deadline(config: Config) -> float:
    """Seconds without drainer progress after which the relay is not ready.

    The ticker wakes the drainer at least every `poll_interval`, and a batch may spend up to
    `delivery_timeout` in the sink: twice the interval leaves room for one late tick.
    """
    return 2 * config.poll_interval + config.delivery_timeout


def outage_reason(outages: Mapping[str, Outage]) -> str | None:
    """Why the relay waits, in one line (the longest outage first), or None when it does not."""
    if not outages:
        return None
    outage = min(outages.values(), key=lambda outage: outage.since)
    tries = f"{outage.tries} failed {'try' if outage.tries == 1 else 'tries'}"
    return f"{outage.what} unavailable ({tries}): {outage.reason}"


def readiness(
    statistics: RelayStatistics, config: Config, now: float, *, last_batch_at: float | None = None
) -> Readiness:
    """Ready = nothing is waited for (an unreachable database or sink: see `relay.outages`), the
    listener is connected and the drainer made progress within `drain_deadline`.

    Progress is the end of a drain (`statistics.last_drain_at`) or of a batch (`last_batch_at`),
    so a long catch-up through a large backlog, which ends no drain, still counts. All times are
    trio times.
    """
    if (reason := outage_reason(statistics.outages)) is not None:
        return Readiness(False, reason)
    if not statistics.listener_connected:
        return Readiness(False, "listener not connected")
    times = [t for t in (statistics.last_drain_at, last_batch_at) if t is not None]
    if not times:
        return Readiness(False, "no drain yet")
    age, limit = now - max(times), drain_deadline(config)
    if age > limit:
        return Readiness(False, f"no drain for {age:.1f}s (limit {limit:g}s)")
    return Readiness(True, "ready")


# -- metrics ---------------------------------------------------------------------------------------


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


@attrs.define(eq=False)
class StatisticsCollector:
    """A prometheus-client collector over `handle.statistics()`, read at every scrape.

    `backlog` is the outbox's backlog as last read (`RelayMetrics.refresh_backlog`); without one
    the backlog gauges are left out rather than reported stale.
    """

    handle: RelayHandle
    backlog: Backlog | None = None

    def collect(self) -> Iterator[Metric]:
        stats = self.handle.statistics()
        for field in attrs.fields(DrainerStatistics):
            if "counter" in field.metadata:
                yield _counter(
                    f"relay_{field.name}", field.metadata["counter"], getattr(stats, field.name)
                )
        wakeups = CounterMetricFamily(
            "relay_wakeups", "Wakeups queued for the drainer, by reason.", labels=["reason"]
        )
        coalesced = CounterMetricFamily(
            "relay_coalesced_wakeups",
            "Wakeups folded into one already pending, by reason.",
            labels=["reason"],
        )
        for reason, count in stats.wakeups.items():
            wakeups.add_metric([reason.value], count)
        for reason, count in stats.coalesced.items():
            coalesced.add_metric([reason.value], count)
        yield wakeups
        yield coalesced
        yield _counter("relay_actor_restarts", "Actor restarts by the supervisor.", stats.restarts)
        yield _counter(
            "relay_listener_recycles",
            "Silent listener connections dropped on purpose.",
            stats.listener_recycles,
        )
        yield _gauge(
            "relay_listener_connected",
            "1 while the listener is listening, else 0.",
            int(stats.listener_connected),
        )
        yield from self._backlog_gauges()

    def _backlog_gauges(self) -> Iterable[Metric]:
        backlog = self.backlog
        if backlog is None:
            return
        yield _gauge(
            "relay_pending_events", "Events in the outbox, retrying ones included.", backlog.pending
        )
        age = backlog.oldest_age if backlog.pending else 0.0
        if age is not None:
            yield _gauge(
                "relay_oldest_pending_age_seconds",
                "Seconds since the oldest pending event was written (0 when none).",
                age,
            )
        if backlog.notification_queue_usage is not None:
            yield _gauge(
                "relay_notification_queue_usage",
                "Fraction of PostgreSQL's NOTIFY queue in use (pg_notification_queue_usage()).",
                backlog.notification_queue_usage,
            )


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.define(eq=False)
class RelayMetrics:
    """The relay's Prometheus metrics, in a registry of their own.

    Create it with `RelayMetrics.create(handle)`, then feed the histograms by passing
    `observe_batch` to `handle.add_batch_observer`.

    Attributes:
        registry: what `/metrics` exposes.
        last_batch_at: trio time the last observed batch was settled, or None.
    """

    handle: RelayHandle
    registry: CollectorRegistry
    collector: StatisticsCollector
    batch_duration: Histogram
    end_to_end_lag: Histogram
    wall_clock: Callable[[], datetime.datetime] = _utc_now
    last_batch_at: float | None = None

    @classmethod
    def create(
        cls, handle: RelayHandle, *, wall_clock: Callable[[], datetime.datetime] = _utc_now
    ) -> RelayMetrics:
        """A fresh registry with every relay metric; `wall_clock` is only for the lag."""
        registry = CollectorRegistry()
        collector = StatisticsCollector(handle)
        registry.register(collector)
        batch_duration = Histogram(
            "relay_batch_duration_seconds",
            "Seconds from claiming a batch to committing its outcome (batches with events).",
            buckets=BATCH_DURATION_BUCKETS,
            registry=registry,
        )
        end_to_end_lag = Histogram(
            "relay_end_to_end_lag_seconds",
            "Seconds from an event's created_at to its delivery being committed.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        return cls(handle, registry, collector, batch_duration, end_to_end_lag, wall_clock)

    def observe_batch(self, report: BatchReport) -> None:
        """A `BatchObserver`: record the batch's duration and each delivered event's lag."""
        self.last_batch_at = trio.current_time()
        self.batch_duration.observe(report.duration)
        now = self.wall_clock()
        for event in report.delivered:
            # Clocks of two machines: never report a negative lag.
            self.end_to_end_lag.observe(max(0.0, (now - event.created_at).total_seconds()))

    async def refresh_backlog(self) -> None:
        """Ask the outbox for its backlog (bounded by `BACKLOG_TIMEOUT`) for the next scrape.

        On failure or timeout the backlog gauges are left out of the scrape; the counters still
        answer, since a metrics endpoint is most wanted when the database is in trouble.
        """
        backlog = None
        with trio.move_on_after(BACKLOG_TIMEOUT) as scope:
            try:
                backlog = await self.handle.backlog()
            except Exception:  # any failure to read the backlog: served without it
                logger.warning("metrics: cannot read the outbox backlog", exc_info=True)
        if scope.cancelled_caught:
            logger.warning("metrics: the outbox backlog took over %ss; left out", BACKLOG_TIMEOUT)
        self.collector.backlog = backlog

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format `accept` asks for (Prometheus text by default), and its
        content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


# -- HTTP ------------------------------------------------------------------------------------------


def _header(scope: HTTPScope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


@attrs.define(eq=False)
class ObservabilityApp:
    """The ASGI application: `/metrics`, `/healthz` and `/readyz`; anything else is a 404."""

    handle: RelayHandle
    config: Config
    metrics: RelayMetrics

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return  # a websocket the app does not accept: the server refuses it
        status, body, headers = await self._respond(scope)
        headers = [
            *headers,
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {
                "type": "http.response.body",
                "body": b"" if scope["method"] == "HEAD" else body,
                "more_body": False,
            }
        )

    async def _respond(self, scope: HTTPScope) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        text = [(b"content-type", b"text/plain; charset=utf-8")]
        if scope["path"] not in ("/metrics", "/healthz", "/readyz"):
            return 404, b"not found\n", text
        if scope["method"] not in ("GET", "HEAD"):
            return 405, b"method not allowed\n", [*text, (b"allow", b"GET, HEAD")]
        if scope["path"] == "/metrics":
            await self.metrics.refresh_backlog()
            body, content_type = self.metrics.exposition(_header(scope, b"accept"))
            return 200, body, [(b"content-type", content_type.encode())]
        if scope["path"] == "/healthz":
            return 200, b"ok\n", text
        state = readiness(
            self.handle.statistics(),
            self.config,
            trio.current_time(),
            last_batch_at=self.metrics.last_batch_at,
        )
        return (200 if state.ready else 503), state.reason.encode() + b"\n", text


@attrs.define(eq=False)
class StartingApp:
    """What the endpoints answer while the relay is starting: alive, not ready, and why."""

    outages: Outages

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            return
        text = [(b"content-type", b"text/plain; charset=utf-8")]
        if scope["path"] == "/healthz":
            status, body = 200, b"ok\n"
        elif scope["path"] in ("/readyz", "/metrics"):
            reason = outage_reason(self.outages.current()) or "starting"
            status, body = 503, f"starting: {reason}\n".encode()
        else:
            status, body = 404, b"not found\n"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*text, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def serve_observability(
    handle: RelayHandle,
    config: Config,
    address: tuple[str, int] | socket.socket,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `/metrics`, `/healthz` and `/readyz` for the relay behind `handle` until cancelled.

    Owns its listening socket and a `RelayMetrics` (registry, batch observer on the drainer),
    released on the way out. At most `http.MAX_CONNECTIONS` connections at once.

    Args:
        handle: the running relay, from `run_relay`.
        config: the relay's `Config` (for readiness).
        address: (host, port) to listen on (port 0 picks a free port), or a listening socket.
        task_status: receives the (host, port) actually bound, once the socket is listening.

    Raises:
        ConfigError: `address` cannot be listened on (field `metrics_addr`).
    """
    metrics = RelayMetrics.create(handle)
    sock = address if isinstance(address, socket.socket) else await listen(address)
    handle.add_batch_observer(metrics.observe_batch)
    try:
        host, port = sock.getsockname()[:2]
        logger.info("serving /metrics, /healthz and /readyz on http://%s", shown(host, port))
        task_status.started((host, port))
        await serve_asgi(ObservabilityApp(handle, config, metrics), sock)
    finally:
        handle.remove_batch_observer(metrics.observe_batch)
        sock.close()
