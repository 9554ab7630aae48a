"""A throwaway local PostgreSQL cluster for tests and benchmarks (Debian's postgresql package).

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` system user.
Each test gets its own database in the one cluster.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from linecrew.server.broker import free_port


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                        None)
    if not found:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package (make setup does)")
    return found


class LocalPostgres:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="linecrew-pg-"))
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> LocalPostgres:
        data = str(self.folder / "data")
        self._run(_bin("initdb"), "-D", data, "--auth=trust", "-U", "postgres", "--no-sync")
        self._run(_bin("pg_ctl"), "-D", data, "-w", "-l", str(self.folder / "log"), "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200",
                  "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self._as, _bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
