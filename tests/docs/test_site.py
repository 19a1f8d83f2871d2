"""The docs site builds offline with warnings as errors, and a broken link does break it; the
README keeps its quick start, and its links lead somewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK_START = [
    "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[demo]'"
    " && .venv/bin/relay demo",
    "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[dev]'"
    " && .venv/bin/just test",
]


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "getting-started" / "index.html").exists()
    assert (tmp_path / "site" / "benchmarks" / "results" / "index.html").exists()
    assert (tmp_path / "site" / "benchmarks" / "drain.png").exists()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what the site is built from, to break."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copytree(ROOT / "benchmarks" / "results", copy / "benchmarks" / "results")
    shutil.copy(ROOT / "mkdocs.yml", copy)
    return copy


@pytest.mark.parametrize(
    ("page", "added", "warning"),
    [
        ("index.md", "[gone](no-such-page.md)", "'no-such-page.md', but the target is not found"),
        ("index.md", "[gone](design.md#no-such-anchor)", "does not contain an anchor"),
        ("sinks/nats.md", "[gone](#no-such-heading)", "no-such-heading"),
        ("index.md", "[up](../README.md)", "'../README.md', but the target"),
        ("orphan.md", "# Orphan", 'not included in the "nav"'),
    ],
)
def test_a_broken_link_or_a_page_outside_the_nav_fails_the_build(
    project: Path, tmp_path: Path, page: str, added: str, warning: str
) -> None:
    with (project / "docs" / page).open("a") as file:
        file.write(f"\n{added}\n")
    result = build(project, tmp_path / "site")
    assert result.returncode == 1
    assert warning in result.stderr
    assert "Aborted with 1 warnings in strict mode" in result.stdout


def test_the_readme_quick_start_keeps_its_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"```sh\n(.*?)\n```", quick_start, re.DOTALL) == QUICK_START
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert QUICK_START[1] in ci_lines  # verbatim, on a line of its own


def test_the_readmes_relative_links_lead_to_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((?!https?://)([^)#]+)(?:#[^)]*)?\)", readme)
    assert "docs/getting-started.md" in targets
    assert [target for target in targets if not (ROOT / target).exists()] == []
