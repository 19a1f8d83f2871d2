"""docs/configuration.md, the CLI reference, names every option `relay run --help` lists, with its
variable and its TOML key: an option added to the code and not to the page fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"
NOT_OPTIONS = {"--help"}  # argparse's own


def run_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"COLUMNS": "100", "PATH": ""},
    ).stdout


def help_flags() -> list[str]:
    usage = run_help().split("\n\n", 1)[0]
    return sorted(set(re.findall(r"\[(--[a-z][a-z-]*)", usage)) - NOT_OPTIONS)


def reference_rows() -> dict[str, str]:
    """The reference table's rows, by the flag in their first cell."""
    rows = {}
    for line in REFERENCE.read_text().splitlines():
        if match := re.match(r"\| `(--[a-z][a-z-]*)` \|", line):
            rows[match[1]] = line
    return rows


def test_the_help_lists_the_options_this_test_reads() -> None:
    """Guards the parsing: a changed usage format must not leave nothing to compare."""
    flags = help_flags()
    assert {"--dsn", "--sink", "--claims-in-flight", "--route", "--tracing"} <= set(flags)
    assert len(flags) > 20


@pytest.mark.parametrize("flag", help_flags())
def test_every_flag_of_relay_run_has_a_row_with_its_variable_and_toml_key(flag: str) -> None:
    rows = reference_rows()
    assert flag in rows, f"docs/configuration.md has no row for `relay run {flag}`"
    name = flag.removeprefix("--").replace("-", "_")
    assert f"`RELAY_{name.upper()}`" in rows[flag]
    if flag != "--config":  # the file names no file
        assert f"`{name}`" in rows[flag]


def test_the_reference_lists_no_flag_relay_run_lacks() -> None:
    assert sorted(reference_rows()) == help_flags()
