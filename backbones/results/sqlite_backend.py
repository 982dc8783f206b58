"""The embedded default: results in one SQLite file, no server needed.

Durability: each write is one transaction in SQLite's rollback journal, so a process killed
mid-sweep leaves every earlier row intact. A file that is not a database (or fails SQLite's
integrity check) is renamed ``<name>.corrupt-<timestamp>`` and a new one started with the rows
that could still be read, with a notice. A database that cannot be written (read-only file or
directory) raises :class:`StoreError` on writes; reads still work. Reads never create the file.
Connections are short-lived (one per call), so a store can be shared between threads and processes.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from backbones.errors import StoreError
from backbones.results.backend import COLUMNS, PROBE, Backend, T, Work, insert_rows, why

#: Environment variable naming the database (the ``--db`` option wins over it); repeated here for the hints.
_DB_ENV = "BACKBONES_RESULTS_DB"


def _is_corruption(exc: sqlite3.Error) -> bool:
    """True when SQLite says the file itself is bad (not locked, read-only or missing)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    message = str(exc).lower()
    if any(s in message for s in ("not a database", "malformed", "corrupt", "encrypted")):
        return True
    return not isinstance(exc, sqlite3.OperationalError) and "readonly" not in message and "locked" not in message


class SqliteBackend(Backend):
    """One SQLite file (see the module docstring). ``notify(message)`` receives the notices."""

    ID_COLUMN = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: str | os.PathLike, notify: Callable[[str], None]):
        self.path = Path(path).expanduser()
        self.where = str(self.path)
        self._notify = notify
        self._checked = False
        self._version_checked = False

    # ----------------------------------------------------------------- connections

    def _open(self, *, read_only: bool = False) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri() + ("?mode=ro" if read_only else "")
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # connect() is lazy: fail here
        return conn

    def has_table(self, cursor, name: str) -> bool:
        return cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    def legacy_version(self, cursor) -> int:
        # Files from before the schema_version table kept their version in SQLite's header.
        return int(cursor.execute("PRAGMA user_version").fetchone()[0])

    def check_health(self) -> None:
        """Check the file once: a corrupt one is moved aside (with a notice) before it is used."""
        if self._checked or not self.path.exists():
            return
        try:
            conn = self._open(read_only=not os.access(self.path, os.W_OK))
            try:
                status = conn.execute("PRAGMA quick_check").fetchone()
                if status is None or status[0] != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {status[0] if status else 'no answer'}")
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "results" in tables:
                    cols = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
                    if not set(COLUMNS) <= cols:
                        raise StoreError(
                            f"{self.path} has a 'results' table that is not Backbone Lens's; "
                            f"choose another file with --db or ${_DB_ENV}"
                        )
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if not _is_corruption(exc):
                raise StoreError(f"cannot read results database {self.path}: {why(exc)}") from exc
            rescued = self._salvage()
            target = self._move_aside(why(exc))
            self._checked = True
            restored = self._restore(rescued)
            self._notify(
                f"results database {self.path} was corrupt ({why(exc)}); moved it to {target.name} "
                f"and started a new one" + (f" with the {restored} row(s) that could still be read" if restored else "")
            )
        self._checked = True

    def _salvage(self) -> list[tuple]:
        """Rows still readable from a corrupt file, in id order, until the first unreadable page."""
        rows: list[tuple] = []
        try:
            conn = self._open(read_only=True)
        except sqlite3.Error:
            return rows
        try:
            for row in conn.execute(f"SELECT {', '.join(COLUMNS[1:])} FROM results ORDER BY id"):
                rows.append(tuple(row))
        except sqlite3.Error:
            pass
        finally:
            conn.close()
        return rows

    def _restore(self, rows: list[tuple]) -> int:
        if not rows:
            return 0
        try:
            return self.write(lambda cursor: insert_rows(cursor, rows))
        except StoreError:
            return 0

    def _move_aside(self, reason: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, target)
            # A journal belongs to the broken file; left in place it would be applied to the new one.
            for suffix in ("-journal", "-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, target.with_name(target.name + suffix))
        except OSError as exc:
            raise StoreError(
                f"results database {self.path} is corrupt ({reason}) and cannot be moved aside: {why(exc)}"
            ) from exc
        return target

    def _writer(self) -> sqlite3.Connection:
        self.check_health()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the results directory {self.path.parent}: {why(exc)}") from exc
        try:
            conn = self._open()
            with conn:
                conn.execute("BEGIN IMMEDIATE")  # one client at a time checks and upgrades the schema
                self.migrate(conn.cursor())
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        return conn

    def _write_error(self, exc: sqlite3.Error) -> StoreError:
        hint = f"choose a writable file with --db or ${_DB_ENV}"
        message = str(exc).lower()
        if "readonly" in message or "read-only" in message or "unable to open" in message:
            return StoreError(f"results database {self.path} is read-only here ({why(exc)}); nothing was stored; {hint}")
        return StoreError(f"cannot write to results database {self.path}: {why(exc)}; {hint}")

    def _reader(self) -> sqlite3.Connection | None:
        """A connection for reading, or None when there is no database yet (reads never create it)."""
        self.check_health()
        if not self.path.exists():
            return None
        try:
            # Read-write when possible: SQLite may need to roll back a killed writer's journal.
            try:
                conn = self._open()
            except sqlite3.OperationalError:
                conn = self._open(read_only=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read results database {self.path}: {why(exc)}") from exc
        if not self._version_checked:
            self._check_version(conn)
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        try:
            self.check_version(conn.cursor())
        except StoreError:
            conn.close()
            raise
        self._version_checked = True

    # ----------------------------------------------------------------- Backend

    def write(self, work: Work) -> T:
        conn = self._writer()
        try:
            with conn:
                return work(conn.cursor())
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        finally:
            conn.close()

    def read(self, sql: str, args: list) -> list[tuple]:
        conn = self._reader()
        if conn is None:
            return []
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise StoreError(f"cannot read results database {self.path}: {why(exc)}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read results database {self.path}: {why(exc)}") from exc
        finally:
            conn.close()

    def ensure_writable(self) -> None:
        conn = self._writer()
        try:
            # Only a real write proves it (root, read-only mounts): insert a row and roll it back.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(PROBE, ("probe-" + uuid.uuid4().hex,))
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        finally:
            conn.close()
