"""The bodies of `relay migrate`, `relay status` and `relay dead`: what they print.

Results go to stdout; every answer names the server and database it reached. Text from the
outbox (topics, keys, errors) is escaped in human output: others wrote it. Failures are raised as
relay's errors, which `relay.cli` alone turns into exit codes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .config import Config
from .errors import ConfigError, NotFound
from .text import one_line, printable

if TYPE_CHECKING:
    from .postgres.admin import TopicCounts

# A whole dead table deleted by a forgotten filter cannot be undone: these act only on a scope
# said out loud.
_FILTERS = ("topic", "id", "older_than")


def migrate(config: Config) -> None:
    from .postgres import LATEST_VERSION
    from .postgres.migrations import migrate_where

    server, applied = migrate_where(config)
    where = f"schema {config.schema!r} at {server}"
    if not applied:
        print(f"{where} is up to date (version {LATEST_VERSION}); nothing to do")
    for migration in applied:
        print(f"applied migration {migration.version} to {where}: {migration.description}")


def status(config: Config, *, as_json: bool, routes: Sequence[tuple[str, str]] = ()) -> None:
    """`relay status`; with `routes` ((pattern, destination), first match wins), also the counts
    by route."""
    from .postgres.admin import status

    found = status(config)
    by_route = route_counts(found.topics, routes)
    if as_json:
        document = {
            "server": found.server,
            "schema": config.schema,
            "pending": found.pending,
            "oldest_pending_age_seconds": found.oldest_pending_age,
            "retrying": found.retrying,
            "dead": found.dead,
            "topics": {
                t.topic: {"pending": t.pending, "retrying": t.retrying, "dead": t.dead}
                for t in found.topics
            },
            # JSON escapes control characters itself: it carries the error as stored (cut at
            # 1,000 characters); the human output shows it escaped on one line.
            "retrying_events": [
                {
                    "id": event.id,
                    "topic": event.topic,
                    "key": event.key,
                    "attempts": event.attempts,
                    "next_try_at": event.next_try_at.isoformat(),
                    "last_error": event.last_error,
                }
                for event in found.retrying_events
            ],
        }
        if routes:
            document["routes"] = [
                {"route": pattern, "destination": destination, **counts}
                for (pattern, destination), counts in by_route.items()
            ]
        print(json.dumps(document))
        return
    age = "-" if found.oldest_pending_age is None else f"{found.oldest_pending_age:.1f}s"
    print(f"schema {config.schema!r} at {found.server}")
    print(
        f"pending {found.pending}  oldest pending age {age}  "
        f"retrying {found.retrying}  dead {found.dead}"
    )
    if found.topics:
        topics = [(printable(t.topic), t) for t in found.topics]
        width = max(len("topic"), *(len(shown) for shown, _ in topics))
        print(f"{'topic':<{width}}  {'pending':>9}  {'retrying':>9}  {'dead':>9}")
        for shown, t in topics:
            print(f"{shown:<{width}}  {t.pending:>9}  {t.retrying:>9}  {t.dead:>9}")
    if routes:
        _print_routes(by_route)
    if found.retrying_events:
        print(f"oldest {len(found.retrying_events)} retrying event(s):")
        for event in found.retrying_events:
            key = "-" if event.key is None else printable(event.key)
            print(
                f"  id {event.id}  topic {printable(event.topic)}  key {key}"
                f"  attempts {event.attempts}  next try at {event.next_try_at.isoformat()}"
                f"  error: {one_line(event.last_error or '-')}"
            )


_NO_ROUTE = ("(no route)", "-")


def route_counts(
    topics: Iterable[TopicCounts], routes: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, int]]:
    """Pending, retrying and dead events by route (the first whose pattern matches the topic),
    each route named by its pattern and `scheme://host[:port]`; topics no route takes under
    `_NO_ROUTE`, when there are any."""
    from .secrets import url_origin
    from .sinks.routes import TopicPattern, first_match

    patterns = [TopicPattern.parse(pattern) for pattern, _ in routes]
    names = [(pattern, url_origin(destination)) for pattern, destination in routes]
    counts = {name: {"pending": 0, "retrying": 0, "dead": 0} for name in names}
    for topic in topics:
        index = first_match(patterns, topic.topic)
        route = _NO_ROUTE if index is None else names[index]
        into = counts.setdefault(route, {"pending": 0, "retrying": 0, "dead": 0})
        into["pending"] += topic.pending
        into["retrying"] += topic.retrying
        into["dead"] += topic.dead
    return counts


def _print_routes(by_route: dict[tuple[str, str], dict[str, int]]) -> None:
    rows = [(printable(p), printable(d), counts) for (p, d), counts in by_route.items()]
    width = max(len("route"), *(len(p) for p, _, _ in rows))
    dest_width = max(len("destination"), *(len(d) for _, d, _ in rows))
    print(
        f"{'route':<{width}}  {'destination':<{dest_width}}"
        f"  {'pending':>9}  {'retrying':>9}  {'dead':>9}"
    )
    for pattern, destination, c in rows:
        print(
            f"{pattern:<{width}}  {destination:<{dest_width}}"
            f"  {c['pending']:>9}  {c['retrying']:>9}  {c['dead']:>9}"
        )


def dead(config: Config, args: argparse.Namespace) -> None:
    """`relay dead list|retry|purge`.

    Raises:
        ConfigError: retry or purge without `--all` or a filter, or with both.
        NotFound: ids were asked for that no dead event (matching the other filters) has; the
            rest was done.
    """
    from .postgres import admin

    filtered = any(getattr(args, name) for name in _FILTERS)
    where = admin.DeadFilter(topic=args.topic, ids=tuple(args.id), older_than=args.older_than)
    if args.action == "list":
        with admin.list_dead(config, where, args.limit) as listing:
            count = 0
            for row in listing.rows:
                print(json.dumps(row, default=_iso))
                count += 1
            print(f"relay: listed {count} dead event(s) at {listing.server}", file=sys.stderr)
        missing = listing.missing_ids
    else:
        if args.all == filtered:
            raise ConfigError(
                f"dead {args.action}",
                "--all cannot be combined with --topic, --id or --older-than"
                if filtered
                else "needs a scope: --all, or --topic, --id or --older-than"
                " (and --dry-run to see what it would do)",
            )
        change = admin.change_dead(config, where, args.action, dry_run=args.dry_run)
        ids = (
            ""
            if change.first_id is None
            else f" (id {change.first_id})"
            if change.first_id == change.last_id
            else f" (ids {change.first_id}..{change.last_id})"
        )
        done = "would move" if change.dry_run else "moved"
        if args.action == "purge":
            done = "would purge" if change.dry_run else "purged"
        back = " back into the outbox" if args.action == "retry" else ""
        note = "; nothing changed (--dry-run)" if change.dry_run else ""
        print(f"{done} {change.count} dead event(s){ids}{back} at {change.server}{note}")
        missing = change.missing_ids
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (", ..." if len(missing) > 20 else "")
        filters = " matching the other filters" if args.topic or args.older_than else ""
        raise NotFound(f"no dead event with id {shown}{filters}")


def _iso(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")
