"""The embeddable core stays light: importing it loads no part of the operational layer."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The daemon (and its metrics server's libraries), the command line, the demo and its producer.
OPERATIONAL = (
    "relay.daemon",
    "relay.cli",
    "relay.demo",
    "relay.postgres.producer",
    "hypercorn",
    "prometheus_client",
)


@pytest.mark.parametrize(
    "imports",
    [
        "relay",
        "relay, relay.testing, relay.sinks, relay.postgres.outbox, relay.postgres.admin",
    ],
)
def test_importing_the_core_loads_nothing_operational(imports: str) -> None:
    """In a fresh interpreter: this one has imported everything already."""
    result = subprocess.run(
        [sys.executable, "-c", f"import sys, {imports}; print(*sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = result.stdout.split()
    assert "relay" in loaded
    assert [
        name
        for name in loaded
        if any(name == top or name.startswith(top + ".") for top in OPERATIONAL)
    ] == []
