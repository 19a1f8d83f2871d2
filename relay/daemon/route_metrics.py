"""The metrics of `relay run --route`: each route's counters and whether it is up.

A collector over `RoutingSink.statistics()`, read at every scrape like the relay's own counters,
labelled by the route's pattern and its destination as `scheme://host[:port]` (never a path or a
query, which may hold a secret); and the events no route took.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..sinks.routing import RoutingSink

_LABELS = ["route", "destination"]


@attrs.define(eq=False)
class RouteCollector:
    """A prometheus-client collector over a routing sink's per-route statistics."""

    sink: RoutingSink

    def collect(self) -> Iterator[Metric]:
        delivered = CounterMetricFamily(
            "relay_route_delivered", "Events a route's sink took, by route.", labels=_LABELS
        )
        failed = CounterMetricFamily(
            "relay_route_failed",
            "Events a route's sink failed (then retried or buried), by route.",
            labels=_LABELS,
        )
        deferred = CounterMetricFamily(
            "relay_route_deferred",
            "Events put back, no attempt counted, because their route was down, by route.",
            labels=_LABELS,
        )
        up = GaugeMetricFamily(
            "relay_route_up", "1 while a route's sink is reachable, 0 while down.", labels=_LABELS
        )
        unrouted = CounterMetricFamily(
            "relay_route_unrouted",
            "Events no route's pattern matched (failed permanently, then buried).",
        )
        unrouted.add_metric([], self.sink.unrouted)
        for route in self.sink.statistics():
            labels = [route.pattern, route.destination]
            delivered.add_metric(labels, route.delivered)
            failed.add_metric(labels, route.failed)
            deferred.add_metric(labels, route.deferred)
            up.add_metric(labels, int(route.up))
        yield from (delivered, failed, deferred, up, unrouted)
