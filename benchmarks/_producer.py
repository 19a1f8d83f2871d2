"""A separate writer process: single-row transactions at a fixed rate, commit times to a file.

    python -m benchmarks._producer DSN RATE SECONDS THREADS OUT

Each thread owns a `relay.postgres.producer.Producer` (one connection, one commit per event) and
paces itself to RATE / THREADS events/s; OUT receives `{id: time.time() when commit returned}`.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from relay.config import Config
from relay.postgres.producer import Producer


def latency_event(n: int) -> tuple[str, dict[str, object], str]:
    """The topic, payload and key of the n-th event the latency benches write."""
    return "bench.latency", {"n": n, "sent": "x" * 40}, f"k{n % 1000}"


def _write(
    config: Config, rate: float, seconds: float, offset: int, step: int, times: dict[int, float]
) -> None:
    producer = Producer.connect(config)
    try:
        started = time.monotonic()
        i = 0
        while True:
            due = started + i / rate
            if due - started >= seconds:
                break
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            n = offset + i * step
            topic, payload, key = latency_event(n)
            producer.write(topic, payload, key=key)
            i += 1
        times.update(producer.commit_times)
    finally:
        producer.close()


def main() -> None:
    dsn, rate, seconds, threads, out = sys.argv[1:6]
    config = Config(dsn=dsn)
    count = int(threads)
    per_thread = float(rate) / count
    results: list[dict[int, float]] = [{} for _ in range(count)]
    workers = [
        threading.Thread(
            target=_write, args=(config, per_thread, float(seconds), k, count, results[k])
        )
        for k in range(count)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    merged = {id: t for result in results for id, t in result.items()}
    with open(out, "w") as file:
        json.dump(merged, file)


if __name__ == "__main__":
    main()
