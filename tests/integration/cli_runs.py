"""Running `relay` as a user does, and what every failure must look like."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping


def relay(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m relay.cli ARGS`; `env`, when given, replaces the environment (PATH kept)."""
    environ = None if env is None else {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


def assert_one_clear_line(
    result: subprocess.CompletedProcess[str], *, secret: str, code: int | tuple[int, ...] = 2
) -> str:
    """Exit `code` (or one of them), nothing on stdout, one line on stderr, no traceback, `secret`
    nowhere."""
    assert result.returncode in (code if isinstance(code, tuple) else (code,)), result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert secret not in result.stderr
    return lines[0]
