"""`relay run`: the relay as a daemon, with signals, logs and (optionally) metrics.

The first SIGINT or SIGTERM stops claiming and gives the batches in flight `grace_period` seconds
to settle; a second stops at once. Either way nothing is lost: an unsettled batch rolls back.
"""

from __future__ import annotations

import logging
import signal
from functools import partial

import attrs
import trio

from ..config import Config
from ..errors import ConfigError, OutputClosed, RelayError, RestartIntensityExceeded
from ..outages import Outages
from ..ports import Sink
from ..runtime import RelayHandle, run_relay
from ..secrets import find_secrets, url_origin
from ..sinks import SinkOptions, open_sink
from ..sinks.routes import CATCH_ALL, RouteSpec, TopicPattern, route_secrets
from ..sinks.routing import Route, RoutingSink
from .environ import take_secrets
from .logs import configure
from .settings import Settings

log = logging.getLogger("relay.daemon")


# SinkOptions' fields, as `relay run` names the options that set them.
_SINK_OPTION_NAMES = {
    "sink.secret": "webhook_secret",
    "sink.signature": "webhook_signature",
    "sink.format": "sink_format",
    "sink.cloudevents_source": "cloudevents_source",
    "sink.timeout": "sink_timeout",
    "sink.max_concurrency": "sink_concurrency",
}


def _sink(settings: Settings) -> Sink:
    """The `--sink`, or with `--route` a `RoutingSink` over each route's sink and the catch-all
    (`--sink`, when given, as a last route `>`)."""
    try:
        options = SinkOptions(
            secret=settings.webhook_secret,
            signature=settings.webhook_signature,
            format=settings.sink_format,
            cloudevents_source=settings.cloudevents_source,
            timeout=settings.sink_timeout,
            max_concurrency=settings.sink_concurrency,
        )
    except ConfigError as exc:
        # Named as the operator set it (`webhook_secret`), not as the sink calls it (`secret`).
        raise ConfigError(_SINK_OPTION_NAMES.get(exc.field, exc.field), exc.reason) from None
    if not settings.route:
        return open_sink(settings.sink, options)
    specs = list(settings.route)
    if settings.sink_given:
        specs.append(RouteSpec(TopicPattern.parse(CATCH_ALL), settings.sink))
    routes = [
        Route(spec.pattern, open_sink(spec.url, options), url_origin(spec.url)) for spec in specs
    ]
    log.info(
        "routing by topic, first match wins: %s",
        "; ".join(f"{route.pattern.text} -> {route.destination}" for route in routes),
    )
    return RoutingSink(routes, outage_backoff=settings.config.outage_backoff)


async def _serve(settings: Settings, sink: Sink) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            handle: RelayHandle | None = None

            async def on_signals() -> None:
                # Watched from the start: a relay still starting (say, retrying its listener)
                # has no batch in flight and stops at once.
                first = await signals.__anext__()
                if handle is None:
                    log.info("%s while starting: stopping", signal.Signals(first).name)
                    nursery.cancel_scope.cancel()
                    return
                log.info(
                    "%s: finishing the batches in flight (up to %ss; signal again to stop at once)",
                    signal.Signals(first).name,
                    settings.grace_period,
                )
                async with trio.open_nursery() as stopping:

                    async def second_signal() -> None:
                        await signals.__anext__()
                        log.warning("second signal: stopping now")
                        stopping.cancel_scope.cancel()

                    stopping.start_soon(second_signal)
                    with trio.move_on_after(settings.grace_period):
                        await handle.stop_claiming()
                    stopping.cancel_scope.cancel()
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_signals)
            outages = Outages()
            if isinstance(sink, RoutingSink):
                sink.outages = outages  # a route down shows in /readyz, naming it
            endpoints = None
            if settings.metrics_addr is not None:
                # Served from the start: while the relay waits for its database or sink, /readyz
                # says why (503) and /healthz that the process is alive.
                from .http import SwitchableApp, listen, serve_asgi, shown
                from .observability import ObservabilityApp, RelayMetrics, StartingApp

                sock = await listen(settings.metrics_addr)
                endpoints = SwitchableApp(StartingApp(outages))
                nursery.start_soon(serve_asgi, endpoints, sock)
                where = shown(*sock.getsockname()[:2])
                log.info("serving /metrics, /healthz and /readyz on http://%s", where)
            handle = await nursery.start(partial(run_relay, settings.config, sink, outages=outages))
            if endpoints is not None:
                metrics = RelayMetrics.create(handle)
                handle.add_batch_observer(metrics.observe_batch)
                if isinstance(sink, RoutingSink):
                    from .route_metrics import RouteCollector

                    metrics.registry.register(RouteCollector(sink))
                endpoints.app = ObservabilityApp(handle, settings.config, metrics)
    log.info("stopped")


@attrs.frozen
class Stopped:
    """How `run_daemon` ended: the errors the relay stopped on, none when a signal stopped it."""

    gave_up: tuple[Exception, ...] = ()  # RestartIntensityExceeded: the actors kept failing
    errors: tuple[Exception, ...] = ()  # any other RelayError


def run_daemon(settings: Settings) -> Stopped:
    """Run the relay until a signal or until it stops on its own errors, and say which (the
    command line turns that into an exit code).

    Raises:
        ConfigError: the sink cannot be opened as configured.
        OutputClosed: stdout was closed (the reader of the pipe went away); the batch in flight
            was rolled back, and the message says how many events are left pending.
    """
    # Before the sink is opened: a `python:` sink is imported then, and must not find them.
    settings, _ = take_secrets(settings)
    configure(
        settings.log_level,
        settings.log_format,
        secrets=[
            *find_secrets(settings.config.dsn),
            settings.webhook_secret or "",
            *find_secrets(settings.sink),
            *route_secrets(settings.route),
        ],
    )
    sink = _sink(settings)
    gave_up: tuple[Exception, ...] = ()
    errors: tuple[Exception, ...] = ()
    closed: OutputClosed | None = None
    try:
        trio.run(_serve, settings, sink)
    except* OutputClosed as group:
        [first, *_] = group.exceptions
        closed = first if isinstance(first, OutputClosed) else OutputClosed("the output is closed")
    except* RestartIntensityExceeded as group:
        gave_up = group.exceptions
    except* RelayError as group:
        errors = group.exceptions
    if closed is not None:
        raise OutputClosed(f"{closed}: stopping; {_left_pending(settings.config)}") from None
    return Stopped(gave_up, errors)


def _left_pending(config: Config) -> str:
    from ..postgres.admin import status

    try:
        return f"{status(config).pending} events left pending"
    except RelayError:  # the count is a courtesy: the events are safe either way
        return "the undelivered events stay pending"
