"""Every example of the docs pages and the README runs as the page shows it (tests/docs/runner.py).

One test per page, its blocks in order in a folder and a fresh database of the page's own, as a
reader follows it. A page whose examples need a broker this machine lacks is skipped, saying which.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from relay.testing.database import Databases
from tests.conftest import PostgresServer
from tests.docs.examples import Page, parse_page
from tests.docs.runner import example_environment, missing, run_page

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture(params=PAGES, ids=page_id)
def page(request: pytest.FixtureRequest) -> Page:
    """One page, parsed: a malformed marker or an unmarked block no rule runs fails its test."""
    path: Path = request.param
    return parse_page(path)


@pytest.fixture
def page_database(
    page: Page, relay_databases: Databases, postgres_server: PostgresServer
) -> Iterator[str]:
    """A fresh migrated database, or an empty one for a page marked `empty-database`."""
    if "empty-database" in page.options:
        name = f"relay_docs_{os.getpid()}_{page.path.stem.replace('-', '_')}"
        with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = postgres_server.dsn(name)
    else:
        dsn = relay_databases.create()
    try:
        yield dsn
    finally:
        relay_databases.drop(dsn)


def test_there_are_pages_with_examples() -> None:
    """Guards the glob: a moved docs folder must not make the page tests vanish silently."""
    assert (ROOT / "docs" / "index.md") in PAGES
    assert sum(len(parse_page(path).blocks) for path in PAGES) > 20


def test_the_pages_examples_run_as_shown(page: Page, page_database: str, tmp_path: Path) -> None:
    if absent := missing(page):
        pytest.skip(f"{page_id(page.path)} needs {', '.join(absent)}: not reachable here")
    run_page(page, tmp_path, example_environment(page_database))
