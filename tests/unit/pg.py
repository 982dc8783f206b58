"""A throwaway PostgreSQL cluster for the results-store tests (and benchmarks/store_throughput.py).

Debian's server binaries (``apt-get install postgresql``, in /usr/lib/postgresql/<version>/bin) are
started on a free loopback port in a temporary directory, as the ``postgres`` user when we are root
(PostgreSQL refuses to run as root), with a password-authenticated user. Where the binaries (or
psycopg) are missing the tests are skipped, unless ``CI=true``: there they fail, so CI cannot pass
without proving the PostgreSQL path.

    from tests.unit.pg import pg_cluster, pg_url   # import both: pg_url depends on pg_cluster
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

USER = "lens"
PASSWORD = "s3cret-Pa55word"  # tests check it never appears in any output
SUPERUSER_PASSWORD = "super-" + PASSWORD


def server_binaries() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` folder that has initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One cluster: ``start()``, ``stop()``, ``url(dbname)``, ``create_database()``, ``close()`` (removes it)."""

    def __init__(self, bindir: Path, *, durable: bool = False):
        self.bindir = bindir
        self.durable = durable  # False (tests): fsync off, nothing needs to survive a power cut
        self.root = Path(tempfile.mkdtemp(prefix="backbones-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        self.start()
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}' CREATEDB")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def start(self) -> None:
        options = f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=60"
        if not self.durable:
            options += " -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def admin(self):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", password=SUPERUSER_PASSWORD,
                               dbname="postgres", autocommit=True)

    def url(self, dbname: str, *, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new empty database owned by the test user; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(*, durable: bool = False) -> Cluster:
    """A running cluster, or :func:`pytest.skip` (``pytest.fail`` under ``CI=true``) when it cannot be had."""
    why = None
    bindir = server_binaries()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        why = "psycopg is not installed"
    if bindir is None:
        why = "PostgreSQL server binaries not found (apt-get install postgresql)"
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {why}")
        pytest.skip(why)
    return Cluster(bindir, durable=durable)


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = start_cluster()
    yield cluster
    cluster.close()


@pytest.fixture()
def pg_url(pg_cluster) -> str:
    """The URL of a fresh, empty database on the session's cluster."""
    return pg_cluster.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request, tmp_path):
    """Make a new empty results database of each backend in turn: ``new_db()`` -> a file path or a URL."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_cluster").create_database
    counter = iter(range(1000))
    return lambda: str(tmp_path / f"db{next(counter)}.sqlite")


def here_label(store, machine: str | None = None) -> str:
    """The source a row added as "here" has in ``store``: on a shared server, the machine it names
    (``machine``, the env's), else this machine's label."""
    from backbones.results.store import HERE, machine_label

    return (machine or machine_label()) if store.backend.shared else HERE


# --------------------------------------------------------------------- concurrent writers


def _write_results(url: str, writer: int, count: int, barrier, payload: dict) -> None:
    from backbones.results.store import ResultsStore

    store = ResultsStore(url)
    store.ensure_writable()  # schema and connection ready before the clock starts
    barrier.wait()
    for i in range(count):
        store.add("latency", f"model{i % 5}", dict(payload, i=i), run_id=f"writer{writer}-{i}")
    for i in range(min(count, 10)):  # retried inserts (same run id) must not duplicate
        store.add("latency", f"model{i % 5}", dict(payload, i=i), run_id=f"writer{writer}-{i}")
    store.close()


def write_concurrently(url: str, *, processes: int = 4, per_process: int = 50, payload: dict | None = None) -> float:
    """``processes`` forked writers add ``per_process`` results each to ``url`` at once (plus 10
    retried run ids each); returns the seconds from the common start to the last writer's end."""
    import multiprocessing
    import time

    ctx = multiprocessing.get_context("fork")  # no re-import of torch per writer: the start is what is timed
    barrier = ctx.Barrier(processes + 1)
    workers = [ctx.Process(target=_write_results, args=(url, k, per_process, barrier, payload or {}))
               for k in range(processes)]
    for w in workers:
        w.start()
    barrier.wait(timeout=120)
    started = time.perf_counter()
    for w in workers:
        w.join(timeout=300)
    elapsed = time.perf_counter() - started
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} writer(s) failed (exit codes {failed})")
    return elapsed
