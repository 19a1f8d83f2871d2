"""The runner fails an example that does not do what its page shows (real processes, no DB)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from psycopg import conninfo

from tests.docs.examples import parse_page
from tests.docs.runner import ExampleFailed, as_url, run_page

ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}


def run(text: str, folder: Path) -> int:
    return run_page(parse_page(Path("page.md"), text), folder, ENV)


def test_shown_output_is_checked_with_ellipsis_and_loose_whitespace(tmp_path: Path) -> None:
    text = "```console\n$ printf 'a  b\\nc\\nd\\n'\na b\n...\nd\n$ echo yes\nyes\n```\n"
    assert run(text, tmp_path) == 1
    with pytest.raises(ExampleFailed, match=r"page\.md:2: \$ echo no: the output differs"):
        run("```console\n$ echo no\nyes\n```\n", tmp_path)


def test_stderr_is_part_of_the_output_as_a_terminal_shows_it(tmp_path: Path) -> None:
    run("```console\n$ echo oops >&2\noops\n```\n", tmp_path)


def test_a_command_that_fails_fails_the_page_even_with_no_output_shown(tmp_path: Path) -> None:
    with pytest.raises(ExampleFailed, match=r"page\.md:2: \$ false: exit 1"):
        run("```console\n$ false\n```\n", tmp_path)
    run('```console\n$ false || echo "exit $?"\nexit 1\n```\n', tmp_path)


def test_a_failing_script_fails_the_page_with_its_traceback(tmp_path: Path) -> None:
    with pytest.raises(ExampleFailed, match=r"(?s)page\.md:1: .* exit 1:.*ZeroDivisionError"):
        run("```python\n1 / 0\n```\n", tmp_path)


def test_a_command_that_runs_on_is_stopped_like_ctrl_c_and_checked(tmp_path: Path) -> None:
    script = "import signal, sys, time\nprint('started', flush=True)\ntry:\n    time.sleep(60)\n"
    script += "except KeyboardInterrupt:\n    print('stopped cleanly')\n"
    (tmp_path / "forever.py").write_text(script)
    marker = "<!-- docs-test: stop-after=0.5 -->\n"
    run(f"{marker}```console\n$ python3 forever.py\nstarted\nstopped cleanly\n```\n", tmp_path)


def test_a_command_past_its_timeout_is_killed_and_fails_the_page(tmp_path: Path) -> None:
    marker = "<!-- docs-test: timeout=0.5 -->\n"
    with pytest.raises(ExampleFailed, match=r"still running after 0\.5s; output so far:\nbegun"):
        run(f"{marker}```console\n$ echo begun; sleep 30\n```\n", tmp_path)


def test_a_background_process_left_behind_is_killed(tmp_path: Path) -> None:
    marker = "<!-- docs-test: stop-after=0.5 -->\n"
    command = "trap 'exit 0' INT; sleep 300 & echo $! > pid; wait"  # background: ignores SIGINT
    run(f"{marker}```console\n$ {command}\n```\n", tmp_path)
    stat = Path(f"/proc/{int((tmp_path / 'pid').read_text())}/stat")

    def gone() -> bool:  # or dead, waiting to be reaped by whoever inherited it (state Z)
        try:
            return stat.read_text().rpartition(")")[2].split()[0] == "Z"
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 5  # SIGKILL lands at the process's next scheduling
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone()


def test_files_are_written_for_the_commands_after_them(tmp_path: Path) -> None:
    text = "```toml\n# relay.toml\nbatch_size = 1\n```\n\n```console\n$ cat relay.toml\n"
    text += "# relay.toml\nbatch_size = 1\n```\n"
    run(text, tmp_path)


def test_skipped_blocks_are_not_run(tmp_path: Path) -> None:
    text = "<!-- docs-test: skip it would fail on purpose here -->\n```console\n$ false\n```\n"
    assert run(text, tmp_path) == 0


@pytest.mark.parametrize(
    "dsn",
    [
        "user=postgres dbname=relay_test_1 host=127.0.0.1 port=54307",
        "host=/tmp/socket dbname=a user=b password='p@ss:/ word' port=5 sslmode=disable",
        "postgresql://a:b@h:1/d?application_name=x",
    ],
)
def test_the_examples_get_the_database_as_a_url_naming_the_same_connection(dsn: str) -> None:
    """enqueue.md hands RELAY_DSN to SQLAlchemy's make_url and asyncpg: they need a URL."""
    url = as_url(dsn)
    assert url.startswith("postgresql://")
    assert conninfo.conninfo_to_dict(url) == conninfo.conninfo_to_dict(dsn)
