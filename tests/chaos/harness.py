"""Relay processes, producers, faults and the final accounting for the chaos scenarios."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import psycopg

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".chaos-results"


@attrs.define(eq=False)
class RelayProcess:
    """One `relay run` with the chaos sink; its deliveries go to `log`."""

    dsn: str
    log: Path
    stderr: Path
    args: tuple[str, ...] = ()
    env: dict[str, str] = attrs.field(factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "relay.cli",
            "run",
            "--dsn",
            self.dsn,
            "--sink",
            "python:tests.chaos.chaos_sink:handler",
            "--poll-interval",
            "1",
            "--delivery-timeout",
            "2",
            "--retry-backoff-base",
            "0.05",
            "--retry-backoff-cap",
            "0.5",
            "--max-attempts",
            "1000",
            "--restart-intensity",
            "10000",
            "--log-level",
            "info",
            "--grace-period",
            "5",
            *self.args,
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RELAY_CHAOS_LOG": str(self.log), **self.env}
        with self.stderr.open("ab") as stderr:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def running(self, starts: int = 1) -> bool:
        """Whether this relay has said it runs (its listener is up), `starts` times: its stderr
        file is appended to, so a restarted relay's earlier starts are still in it."""
        return self.stderr.read_text().count("relay running") >= starts

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@contextmanager
def relays(
    dsn: str, tmp_path: Path, count: int, *args: str, env: dict[str, str] | None = None
) -> Iterator[list[RelayProcess]]:
    started = [
        RelayProcess(dsn, tmp_path / f"relay{n}.log", tmp_path / f"relay{n}.err", args, env or {})
        for n in range(count)
    ]
    for relay in started:
        relay.log.touch()
        relay.start()
    # The faults come once every relay runs: a relay still connecting when the server goes away
    # fails to start (exit 2), which is not what the scenarios are about.
    wait_until(lambda: all(relay.running() for relay in started), "every relay running")
    try:
        yield started
    finally:
        codes = [relay.stop() for relay in started]
        assert all(code == 0 for code in codes), (codes, _tails(started))


def _tails(started: list[RelayProcess]) -> str:
    return "\n".join(relay.stderr.read_text()[-2000:] for relay in started)


def produce(
    dsn: str, *, producers: int, events: int, keys: int, per_statement: int = 5, pause: float = 0.0
) -> None:
    """`producers` threads write `events` in all, by plain SQL, over `keys` keys.

    Each producer owns its own keys, as one aggregate's writes are serialised in an application:
    ids come from a sequence at insert time, so two writers racing on one key could commit a
    later id first, and no relay could then deliver that key in id order.
    """

    def write(share: int, producer: int) -> None:
        rng = random.Random(producer)
        with psycopg.connect(dsn, autocommit=True) as conn:
            written = 0
            while written < share:
                n = min(per_statement, share - written)
                conn.execute(
                    "INSERT INTO relay.outbox (topic, key, payload) SELECT 'chaos',"
                    " 'p' || %s || '-k' || (floor(random() * %s))::int,"
                    " jsonb_build_object('s', %s) FROM generate_series(1, %s)",
                    [producer, max(1, keys // producers), rng.random(), n],
                )
                written += n
                if pause:
                    time.sleep(pause)

    threads = [
        threading.Thread(target=write, args=(events // producers, n)) for n in range(producers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@attrs.frozen
class Accounting:
    events: int
    delivered_ids: int
    lost: int
    duplicates: int
    order_violations: int
    max_delay: float

    def as_dict(self) -> dict[str, float]:
        return attrs.asdict(self)


def account(logs: list[Path], expected: int) -> Accounting:
    """Every id 1..expected delivered at least once, per-key order of first deliveries."""
    records = []
    for log in logs:
        # A relay may be writing its last line right now: only whole lines count.
        for line in log.read_text().split("\n")[:-1]:
            stamp, id, key, delay = line.split()
            records.append((int(stamp), int(id), key, float(delay)))
    records.sort()
    seen: set[int] = set()
    last_by_key: dict[str, int] = defaultdict(int)
    violations = 0
    for _, id, key, _ in records:
        if id in seen:
            continue
        seen.add(id)
        if key != "-":
            if id < last_by_key[key]:
                violations += 1
            last_by_key[key] = max(last_by_key[key], id)
    lost = len(set(range(1, expected + 1)) - seen)
    return Accounting(
        events=expected,
        delivered_ids=len(seen),
        lost=lost,
        duplicates=len(records) - len(seen),
        order_violations=violations,
        max_delay=max((r[3] for r in records), default=0.0),
    )


def record(scenario: str, accounting: Accounting, **extra: object) -> None:
    """Keep the figures for docs/design.md and the closing note; print them too (pytest -s)."""
    RESULTS.mkdir(exist_ok=True)
    entry = {"scenario": scenario, **accounting.as_dict(), **extra}
    (RESULTS / f"{scenario}.json").write_text(json.dumps(entry, indent=1))
    print(json.dumps(entry))


def all_ids_delivered(logs: list[Path], expected: int) -> Callable[[], bool]:
    def check() -> bool:
        return account(logs, expected).lost == 0

    return check
