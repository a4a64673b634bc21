"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl in a temporary directory.

It listens on a unix socket only (no TCP port), and is stopped and deleted on exit. As root, the
server runs as the `postgres` user, since PostgreSQL refuses to run as root.

Run `python tests/pgserver.py` to keep one up by hand (for `opq bench store --db URL`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

USER = "opq"
PORT = 5432


def find_bindir() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return candidates[0].parent if candidates else None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    result = subprocess.run(
        _as_server_user(command), capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


@contextlib.contextmanager
def throwaway_server(*, durable: bool = False) -> Iterator[str]:
    """Start a server and yield the URL of its database `opq`; stop and delete it afterwards.

    durable=False turns fsync off, which is right for tests; benchmarks keep PostgreSQL's defaults.
    """
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found: run `make test` (it installs Debian's "
            "postgresql package) or install it by hand"
        )
    root = Path(tempfile.mkdtemp(prefix="opqpg"))
    data, socket_dir = root / "data", root / "sock"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        server_user = pwd.getpwnam("postgres")
        for path in (root, socket_dir):
            os.chown(path, server_user.pw_uid, server_user.pw_gid)
    options = f"-k {socket_dir} -c listen_addresses='' -p {PORT}"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8"])
        _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-w",
                "-o",
                options,
                "start",
            ]
        )
        try:
            _run(
                [
                    str(bindir / "createdb"),
                    "-h",
                    str(socket_dir),
                    "-p",
                    str(PORT),
                    "-U",
                    USER,
                    "opq",
                ]
            )
            yield f"postgresql://{USER}@/opq?host={socket_dir}&port={PORT}"
        finally:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    with throwaway_server(durable="--fast" not in sys.argv) as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read() if not sys.stdin.isatty() else input("press Enter to stop\n")
