"""The systemd unit in contrib/ is one systemd accepts, and keeps its promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "relay.service"


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (no systemd): cannot verify the unit")
    # verify wants ExecStart's binary to exist: point it at this Python's relay script.
    relay = Path(sys.executable).with_name("relay")
    assert relay.exists()
    unit = tmp_path / "relay.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/relay", str(relay)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


def test_the_unit_restarts_on_failure_but_not_on_a_configuration_error() -> None:
    """No secret on the command line either: the DSN comes from the environment file."""
    service = dict(line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line[:40])
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"
    assert service["EnvironmentFile"].startswith("/etc/relay/")
    assert "--dsn" not in service["ExecStart"] and "RELAY_DSN" not in service["ExecStart"]
