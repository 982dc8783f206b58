"""The results store: measurements kept in an embedded SQLite database.

One row per measurement (``kind`` "latency" for benchmarks, "evaluation" for dataset
evaluations), with the environment it was measured in and where it comes from
(``source``: "here", or the machine a JSON export was made on)::

    store = ResultsStore()                      # cache_dir()/results.sqlite, or $BACKBONES_RESULTS_DB
    row_id = store.add("latency", "resnet18", result.to_record(), env=result.env)
    rows = store.query(kind="latency", model=["resnet18", "vgg16"])  # [StoredResult, ...] oldest first
    store.export_json("mine.json")              # take it to a colleague ...
    store.import_json("gpu-box.json")           # ... or bring theirs: source = their machine label

Durability: each ``add`` is one transaction in SQLite's rollback journal, so a process
killed mid-sweep leaves every earlier row intact. A database file that is not a
database (or fails SQLite's integrity check) is renamed ``<name>.corrupt-<timestamp>``
and a new one started, with a :class:`StoreWarning`. A database that cannot be written
(read-only file or directory) raises :class:`StoreError` on writes; reads still work and
nothing is lost. Every row written fits the schema of :mod:`backbones.results.records`;
a row that does not (put there by other means) is skipped on reading, with a notice.
This module imports no torch: it is cheap to use anywhere.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import time
import uuid
import warnings
from collections.abc import Collection
from pathlib import Path

from backbones.errors import StoreError
from backbones.jsonsafe import json_safe
from backbones.paths import cache_dir
from backbones.results.exchange import check_import_size, export_text, rows_from_json
from backbones.results.records import HERE, RecordError, StoredResult, check_name, decode_row, now_iso, prepare_row

#: Environment variable naming the database file (the ``--db`` option wins over it).
DB_ENV = "BACKBONES_RESULTS_DB"
#: Environment variable naming this machine in exports (default: the host name).
MACHINE_ENV = "BACKBONES_MACHINE"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    uid     TEXT NOT NULL UNIQUE,
    kind    TEXT NOT NULL,
    model   TEXT NOT NULL,
    created TEXT NOT NULL,
    source  TEXT NOT NULL,
    env     TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_kind_model ON results (kind, model);
"""
_COLUMNS = ("id", "uid", "kind", "model", "created", "source", "env", "payload")
_INSERT = "INSERT INTO results (uid, kind, model, created, source, env, payload) VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_NEW = _INSERT.replace("INSERT", "INSERT OR IGNORE", 1)  # rows already there (same uid) are kept


class StoreWarning(UserWarning):
    """Something happened to the database the user should know about (a corrupt file was moved aside,
    rows that do not fit the schema were skipped)."""


def machine_label() -> str:
    """How this machine is named in exports: ``$BACKBONES_MACHINE``, else the host name."""
    return os.environ.get(MACHINE_ENV, "").strip() or platform.node() or "unknown machine"


def default_path() -> Path:
    """``$BACKBONES_RESULTS_DB``, else ``cache_dir()/results.sqlite``."""
    explicit = os.environ.get(DB_ENV, "").strip()
    return Path(explicit).expanduser() if explicit else cache_dir() / "results.sqlite"


def _is_corruption(exc: sqlite3.Error) -> bool:
    """True when SQLite says the file itself is bad (not locked, read-only or missing)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    message = str(exc).lower()
    if any(s in message for s in ("not a database", "malformed", "corrupt", "encrypted")):
        return True
    return not isinstance(exc, sqlite3.OperationalError) and "readonly" not in message and "locked" not in message


def _why(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class ResultsStore:
    """Measurements in one SQLite file (see the module docstring).

    ``path`` defaults to :func:`default_path`. Connections are short-lived (one per
    call), so a store can be shared between threads and processes. ``notices`` collects
    the warnings issued (for a UI to show); each is also a :class:`StoreWarning`.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.notices: list[str] = []
        self._checked = False

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    # ----------------------------------------------------------------- connections

    def _open(self, *, read_only: bool = False) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri() + ("?mode=ro" if read_only else "")
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # connect() is lazy: fail here
        return conn

    def _notify(self, message: str, *, row: int = 0) -> None:
        """Keep ``message`` for a UI and issue it as a :class:`StoreWarning`.

        Issued as about the database (``<results store>:<row id>``) rather than a line of
        code: an uncaught warning is then one line on stderr, whoever called the store.
        """
        self.notices.append(message)
        warnings.warn_explicit(message, StoreWarning, "<results store>", row)

    def check_health(self) -> None:
        """Check the file once per store: a corrupt one is moved aside (with a notice) before it is used.

        Reads and writes do this themselves; a UI calls it first to show the notice early.
        """
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
                    if not set(_COLUMNS) <= cols:
                        raise StoreError(
                            f"{self.path} has a 'results' table that is not Backbone Lens's; "
                            f"choose another file with --db or ${DB_ENV}"
                        )
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if not _is_corruption(exc):
                raise StoreError(f"cannot read results database {self.path}: {_why(exc)}") from exc
            rescued = self._salvage()
            target = self._move_aside(_why(exc))
            self._checked = True
            restored = self._restore(rescued)
            message = (
                f"results database {self.path} was corrupt ({_why(exc)}); moved it to {target.name} "
                f"and started a new one" + (f" with the {restored} row(s) that could still be read" if restored else "")
            )
            self._notify(message)
        self._checked = True

    def _salvage(self) -> list[tuple]:
        """Rows still readable from a corrupt file, in id order, until the first unreadable page."""
        rows: list[tuple] = []
        try:
            conn = self._open(read_only=True)
        except sqlite3.Error:
            return rows
        try:
            cursor = conn.execute(f"SELECT {', '.join(_COLUMNS[1:])} FROM results ORDER BY id")
            for row in cursor:
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
            conn = self._writer()
        except StoreError:
            return 0
        try:
            with conn:
                return sum(conn.execute(_INSERT_NEW, row).rowcount for row in rows)
        except sqlite3.Error:
            return 0
        finally:
            conn.close()

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
                f"results database {self.path} is corrupt ({reason}) and cannot be moved aside: {_why(exc)}"
            ) from exc
        return target

    def _writer(self) -> sqlite3.Connection:
        self.check_health()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the results directory {self.path.parent}: {_why(exc)}") from exc
        try:
            conn = self._open()
            with conn:
                conn.executescript(_SCHEMA)
                if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        return conn

    def _write_error(self, exc: sqlite3.Error) -> StoreError:
        hint = f"choose a writable file with --db or ${DB_ENV}"
        message = str(exc).lower()
        if "readonly" in message or "read-only" in message or "unable to open" in message:
            return StoreError(f"results database {self.path} is read-only here ({_why(exc)}); nothing was stored; {hint}")
        return StoreError(f"cannot write to results database {self.path}: {_why(exc)}; {hint}")

    def _reader(self) -> sqlite3.Connection | None:
        """A connection for reading, or None when there is no database yet (reads never create it)."""
        self.check_health()
        if not self.path.exists():
            return None
        try:
            # Read-write when possible: SQLite may need to roll back a killed writer's journal.
            try:
                return self._open()
            except sqlite3.OperationalError:
                return self._open(read_only=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read results database {self.path}: {_why(exc)}") from exc

    # ----------------------------------------------------------------- writing

    def ensure_writable(self) -> None:
        """Create the database if needed; :class:`StoreError` now rather than after a long sweep."""
        conn = self._writer()
        try:
            # Only a real write proves it (root, read-only mounts): insert a row and roll it back.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO results (uid, kind, model, created, source, env, payload) VALUES (?, '', '', '', '', '', '')",
                ("probe-" + uuid.uuid4().hex,),
            )
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        finally:
            conn.close()

    def add(self, kind: str, model: str, payload: dict, *, env: dict | None = None, source: str = HERE) -> int:
        """Store one result (one transaction) and return its row id.

        ``env`` defaults to a minimal fingerprint (machine, host, time); measurement code
        passes the full one (:func:`backbones.measure.collect_env`). NaN and infinity are
        stored as null (strict JSON); a row that does not fit the schema is a :class:`StoreError`.
        """
        if not isinstance(payload, dict):
            raise StoreError(f"a result's payload must be a dict, got {type(payload).__name__}")
        env = dict(env) if env is not None else {"machine": machine_label(), "hostname": platform.node(), "time": now_iso()}
        try:
            row = prepare_row(kind=kind, model=model, created=now_iso(), source=source or HERE,
                              env=json_safe(env), payload=json_safe(payload), uid=uuid.uuid4().hex)
        except RecordError as exc:
            raise StoreError(f"cannot store this result: {exc}") from exc
        conn = self._writer()
        try:
            with conn:
                cur = conn.execute(_INSERT, row)
            return int(cur.lastrowid)
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        finally:
            conn.close()

    def delete(
        self, ids=None, *, kind: str | None = None, model: str | None = None, source: str | None = None
    ) -> int:
        """Delete rows by id and/or filters (at least one must be given); returns how many."""
        where, args = self._where(kind=kind, model=model, source=source)
        if ids is not None:
            ids = [int(i) for i in ids]
            if not ids:
                return 0
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            args.extend(ids)
        if not where:
            raise StoreError("delete needs ids or a filter; use clear() to delete everything")
        return self._delete(where, args)

    def clear(self) -> int:
        """Delete every row; returns how many."""
        return self._delete([], [])

    def _delete(self, where: list[str], args: list) -> int:
        if not self.path.exists():
            return 0
        conn = self._writer()
        try:
            with conn:
                sql = "DELETE FROM results" + (" WHERE " + " AND ".join(where) if where else "")
                return conn.execute(sql, args).rowcount
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        finally:
            conn.close()

    # ----------------------------------------------------------------- reading

    @staticmethod
    def _where(**filters: str | Collection[str] | None) -> tuple[list[str], list]:
        """SQL conditions: a string filter is ``column = ?``, a collection ``column IN (?, ...)``."""
        where, args = [], []
        for column, value in filters.items():
            if value is None:
                continue
            if isinstance(value, str):
                where.append(f"{column} = ?")
                args.append(value)
            else:
                values = list(value)
                where.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
                args.extend(values)
        return where, args

    def _select(self, sql: str, args: list) -> list[tuple]:
        """Rows of one read-only statement; none when there is no database or table yet."""
        conn = self._reader()
        if conn is None:
            return []
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise StoreError(f"cannot read results database {self.path}: {_why(exc)}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read results database {self.path}: {_why(exc)}") from exc
        finally:
            conn.close()

    def query(
        self,
        kind: str | Collection[str] | None = None,
        model: str | Collection[str] | None = None,
        source: str | Collection[str] | None = None,
    ) -> list[StoredResult]:
        """Rows matching every given filter (one value, or any of several), oldest first.

        The filters run in SQL. A row that does not fit the schema is skipped, with one
        notice per call naming how many and the first (see :attr:`notices`).
        """
        where, args = self._where(kind=kind, model=model, source=source)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        results, skipped = [], []
        for row in self._select(sql + " ORDER BY id", args):
            try:
                results.append(decode_row(row))
            except RecordError as exc:
                skipped.append((row[0], exc))
        if skipped:
            first_id, why = skipped[0]
            self._notify(
                f"skipped {len(skipped)} stored result(s) in {self.path} that do not fit the results schema "
                f"(first: id {first_id}: {why})",
                row=first_id,
            )
        return results

    def sources(self) -> list[str]:
        """Distinct sources, ``"here"`` first (names that are not plain text are left out)."""
        seen = set()
        for (source,) in self._select("SELECT DISTINCT source FROM results", []):
            try:
                check_name(source, "source")
            except RecordError:
                continue
            seen.add(source)
        return sorted(seen, key=lambda s: (s != HERE, s))

    def count(self) -> int:
        """How many rows the database holds (counted by SQLite; rows are not read)."""
        rows = self._select("SELECT count(*) FROM results", [])
        return rows[0][0] if rows else 0

    # ----------------------------------------------------------------- JSON exchange

    def export_json(self, path: str | os.PathLike, *, kind: str | None = None) -> int:
        """Write every row (or one kind) to a JSON file, atomically; returns the row count."""
        rows = self.query(kind=kind)
        text = export_text(rows, machine=machine_label(), exported=now_iso())
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {target}: {_why(exc)}") from exc
        return len(rows)

    def import_json(self, path: str | os.PathLike, *, source: str | None = None) -> int:
        """Merge an export (or a ``bench --json`` list) into this store; returns rows added.

        Imported rows keep their environment and ``created`` time; their source is
        ``source`` if given, else the machine they were measured on (the row's own source
        when it is not "here", else its env's ``machine``/``hostname``, else the export's
        machine). Rows already present (same ``uid``) are skipped, so importing twice adds
        nothing. The file's size is checked before it is read, then every row against the
        schema (:mod:`backbones.results.exchange`); nothing is added unless every row is valid.
        """
        path = Path(path)
        try:
            check_import_size(path.stat().st_size, path.name)
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read {path}: {_why(exc)}") from exc
        rows = rows_from_json(text, path.name, source=source, now=now_iso())
        conn = self._writer()
        added = 0
        try:
            with conn:  # one transaction: all rows or none
                for row in rows:
                    added += conn.execute(_INSERT_NEW, row).rowcount
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        finally:
            conn.close()
        return added
