"""Runs a page's examples in order, as a reader following the page would, in one folder of its own.

Python blocks run as scripts and must exit 0; `# NAME.EXT` blocks are written as files; every `$ `
command runs in a fresh `bash -c` in the page's folder with the venv's `relay` and `python` first
on PATH, stdout and stderr together (as a terminal shows them), and must exit 0; the output shown
under it is compared with doctest's checker (`...` matches anything, runs of whitespace are one).
A command of a `stop-after=S` block that still runs after S seconds gets SIGINT, like Ctrl-C, and
must then stop cleanly. Every process is bounded by a timeout and killed with its children.
"""

from __future__ import annotations

import contextlib
import doctest
import fcntl
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import attrs
from psycopg import conninfo

from tests.docs.examples import PYTHON, SHELL, Block, Command, Page, commands
from tests.redis_server import redis_answers

STOP_GRACE = 20.0  # seconds a command has to stop after SIGINT
# The examples use fixed names in the machine's shared brokers (stream ORDERS, app:orders) and
# fixed ports, as a reader's copy would: test sessions of several checkouts take turns.
MACHINE_LOCK = Path(tempfile.gettempdir()) / "relay-docs-examples.lock"
_CHECKER = doctest.OutputChecker()
_OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


class ExampleFailed(AssertionError):
    """A docs example that did not do what its page says; the message names where and why."""


@attrs.frozen
class Finished:
    returncode: int
    output: str
    stopped: bool  # stopped by the runner's SIGINT (stop-after)


def _tcp_answers(port: int, greeting: bytes = b"") -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(len(greeting)).startswith(greeting) if greeting else True
    except OSError:
        return False


def _kafka_answers() -> bool:
    host, _, port = os.environ.get("RELAY_TEST_KAFKA", "127.0.0.1:9092").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


_PROBES = {
    "nats": ("NATS JetStream on 127.0.0.1:4222", lambda: _tcp_answers(4222, b"INFO")),
    "redis": ("Redis on 127.0.0.1:6379", redis_answers),
    "rabbitmq": ("RabbitMQ on 127.0.0.1:5672", lambda: _tcp_answers(5672)),
    "kafka": ("Kafka at RELAY_TEST_KAFKA or 127.0.0.1:9092", _kafka_answers),
}


def missing(page: Page) -> list[str]:
    """What the page's examples need and this machine lacks, each said in words."""
    absent = []
    for need in page.needs:
        if need.startswith("cmd:"):
            if shutil.which(need.removeprefix("cmd:")) is None:
                absent.append(f"the program {need.removeprefix('cmd:')} on PATH")
        else:
            described, answers = _PROBES[need]
            if not answers():
                absent.append(described)
    return absent


def as_url(dsn: str) -> str:
    """`dsn` (libpq key=value or a URL) as a `postgresql://` URL, the form a reader's RELAY_DSN
    usually has and the one SQLAlchemy's `make_url` and asyncpg read as well as libpq does.
    A host that is a socket folder, and any other parameter, go in the query."""
    params = {name: str(value) for name, value in conninfo.conninfo_to_dict(dsn).items()}
    quote = functools.partial(urllib.parse.quote, safe="")
    user = params.pop("user", "")
    password = params.pop("password", None)
    userinfo = quote(user) + (f":{quote(password)}" if password is not None else "")
    host = params.pop("host", "") if not params.get("host", "").startswith("/") else ""
    port = params.pop("port", "")
    netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{port}" if port else "")
    database = quote(params.pop("dbname", ""))
    query = urllib.parse.urlencode(params)
    return f"postgresql://{netloc}/{database}" + (f"?{query}" if query else "")


def example_environment(dsn: str) -> dict[str, str]:
    """The environment the examples see: the page's database as RELAY_DSN, a `postgresql://` URL
    (and RELAY_TEST_DSN, for test files and scripts that follow the test suite's convention),
    this venv first on PATH, and no other relay, libpq or database setting of the caller's."""
    dsn = as_url(dsn)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RELAY_", "PG", "DATABASE_URL", "PYTEST_", "COV_"))
    }
    env.update(
        RELAY_DSN=dsn,
        RELAY_TEST_DSN=dsn,
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
        COLUMNS="100",
    )
    if kafka := os.environ.get("RELAY_TEST_KAFKA"):
        env["RELAY_TEST_KAFKA"] = kafka
    return env


def run_bounded(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float, stop_after: float | None
) -> Finished:
    """Run `argv` in a session of its own; SIGINT it after `stop_after`; kill it past `timeout`.

    Output goes to a file, not a pipe, so that a process it left in the background (`server &`)
    cannot hold the read open; whatever is left of its session is killed once it has ended.
    """
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stopped = False
        try:
            try:
                process.wait(timeout=stop_after or timeout)
            except subprocess.TimeoutExpired:
                if stop_after is None:
                    raise
                stopped = True
                os.killpg(process.pid, signal.SIGINT)
                process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            limit = f"{timeout:g}s" if stop_after is None else f"{STOP_GRACE:g}s after SIGINT"
            raise ExampleFailed(
                f"still running after {limit}; output so far:\n{_read(output)}"
            ) from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return Finished(process.returncode, _read(output), stopped)


def _read(output: IO[bytes]) -> str:
    output.seek(0)
    return output.read().decode(errors="replace")


def check_command(block: Block, command: Command, folder: Path, env: dict[str, str]) -> None:
    where = f"{block.path.name}:{command.line}: $ {command.text.splitlines()[0]}"
    directives = block.directives
    try:
        finished = run_bounded(
            ["bash", "-c", command.text], folder, env, directives.timeout, directives.stop_after
        )
    except ExampleFailed as failure:
        raise ExampleFailed(f"{where}: {failure}") from None
    if finished.returncode != 0:
        how = " after SIGINT" if finished.stopped else ""
        raise ExampleFailed(f"{where}: exit {finished.returncode}{how}:\n{finished.output}")
    if command.shown and not _CHECKER.check_output(command.shown + "\n", finished.output, _OPTIONS):
        example = doctest.Example(command.text, command.shown + "\n")
        difference = _CHECKER.output_difference(example, finished.output, _OPTIONS)
        raise ExampleFailed(f"{where}: the output differs from the page's:\n{difference}")


def check_script(block: Block, argv: list[str], folder: Path, env: dict[str, str]) -> None:
    finished = run_bounded(argv, folder, env, block.directives.timeout, None)
    if finished.returncode != 0:
        shown = " ".join(argv[1:])
        raise ExampleFailed(
            f"{block.where}: `{shown}` exit {finished.returncode}:\n{finished.output}"
        )


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Held while one page runs, across every test session on this machine."""
    with MACHINE_LOCK.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def run_page(page: Page, folder: Path, env: dict[str, str]) -> int:
    """Run every block of `page` in order in `folder`; returns how many blocks ran."""
    with machine_lock():
        return _run_blocks(page, folder, env)


def _run_blocks(page: Page, folder: Path, env: dict[str, str]) -> int:
    ran = 0
    for block in page.blocks:
        if block.directives.skip is not None:
            continue
        if name := block.file_name:
            (folder / name).write_text(block.text)
        elif block.language in PYTHON:
            script = f"example_{block.line}.py"
            (folder / script).write_text(block.text)
            check_script(block, [sys.executable, script], folder, env)
            ran += 1
        if block.language in SHELL:
            for command in commands(block):
                check_command(block, command, folder, env)
            ran += 1
    return ran
