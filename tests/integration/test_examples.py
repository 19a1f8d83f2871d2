"""The quick start's `relay demo`, `examples/embed.py`, and the plugin's test examples of
docs/testing.md in both pytest-trio modes (tests/docs runs every docs example once as written)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def embedded_servers() -> set[str]:
    """Command lines of running embedded PostgreSQL servers (their data lives in relay-pg-*) of
    this environment's wheel: another checkout's test run on the same machine has its own."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "relay-pg-" in text and "postgres" in text and text.startswith(sys.prefix):
            found.add(text)
    return found


def test_relay_demo_prints_events_and_a_live_line_and_leaves_no_server() -> None:
    before = embedded_servers()
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "demo", "--duration", "4", "--rate", "100"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) >= 100
    assert [event["id"] for event in events] == sorted(event["id"] for event in events)
    live = [line for line in result.stderr.splitlines() if line.startswith("delivered ")]
    assert live, result.stderr
    assert "lag p50" in live[-1] and "pending" in live[-1]
    done = re.search(r"demo done: (\d+) events produced, (\d+) delivered", result.stderr)
    assert done is not None, result.stderr
    produced, delivered = int(done[1]), int(done[2])
    assert delivered == len(events) >= produced  # it drained what it wrote before stopping
    assert embedded_servers() <= before


def test_examples_embed_runs_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "embed.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "done: 5 events handled" in result.stdout


def documented_test_files() -> dict[str, str]:
    """docs/testing.md's example test files: its python blocks whose first line is `# test_*.py`."""
    page = (ROOT / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n# (test_\w+\.py)\n(.*?)```", page, re.DOTALL)
    return dict(blocks)


@pytest.mark.parametrize("trio_mode", [True, False], ids=["trio_mode", "markers"])
def test_the_documented_handler_tests_pass_verbatim(
    tmp_path: Path, postgres_server: PostgresServer, trio_mode: bool
) -> None:
    """In a project of their own, as a user copies them: with `trio_mode` and without it."""
    files = documented_test_files()
    assert {"test_orders.py", "test_orders_postgres.py"} <= files.keys()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n" + ("trio_mode = true\n" if trio_mode else "")
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "RELAY_TEST_DSN": postgres_server.admin_dsn},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^4 passed", result.stdout, re.MULTILINE), result.stdout
