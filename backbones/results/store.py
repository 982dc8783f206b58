"""The results store: measurements kept in a database, embedded SQLite by default or a PostgreSQL server.

One row per measurement (``kind`` "latency" for benchmarks, "evaluation" for dataset
evaluations), with the environment it was measured in and where it comes from
(``source``: "here", or the machine it was measured on)::

    store = ResultsStore()                      # $BACKBONES_RESULTS_DB, else cache_dir()/results.sqlite
    store = ResultsStore("postgresql://lens:PASSWORD@db.lab:5432/lens")   # one board for a whole group
    row_id = store.add("latency", "resnet18", result.to_record(), env=result.env)
    rows = store.query(kind="latency", model=["resnet18", "vgg16"])  # [StoredResult, ...] oldest first
    store.export_json("mine.json")              # take it to a colleague ...
    store.import_json("gpu-box.json")           # ... or bring theirs: source = their machine label

The database is named by a file path, ``sqlite:///FILE``, ``postgresql://...`` or a libpq keyword string
(``host=... dbname=...``), decided once by :func:`~backbones.results.backend.parse_database_url`; one small
backend class per database (:mod:`~backbones.results.sqlite_backend`,
:mod:`~backbones.results.postgres_backend`) runs the same SQL on the same versioned schema
(:mod:`~backbones.results.backend`). Every row has a unique run id (``uid``) and inserts are
idempotent, so writers on several machines lose and duplicate nothing. On a shared server a
row measured "here" is stored under the machine it was measured on (its env's ``machine``), as
an imported row is: there, "here" would mean every machine at once.

With ``keep_locally=True`` (``bench`` and ``eval`` use it) a server that is down or refuses the
login does not lose the result: it goes to the local SQLite default with a :class:`StoreWarning`
and :meth:`push` (``python -m backbones results --push``) sends it once the server is back.
Every row written fits the schema of :mod:`backbones.results.records`; a row that does not
(put there by other means) is skipped on reading, with a notice. This module imports no torch.
"""

from __future__ import annotations

import json
import os
import platform
import uuid
import warnings
from collections.abc import Collection
from pathlib import Path

from backbones.errors import StoreError
from backbones.jsonsafe import json_safe
from backbones.paths import cache_dir
from backbones.results.backend import (
    COLUMNS,
    INSERT,
    SCHEMA_VERSION,
    StoreUnavailable,
    insert_rows,
    parse_database_url,
    why,
)
from backbones.results.exchange import check_import_size, env_machine, export_text, rows_from_json
from backbones.results.postgres_backend import PostgresBackend
from backbones.results.records import HERE, RecordError, StoredResult, check_name, decode_row, now_iso, prepare_row
from backbones.results.sqlite_backend import SqliteBackend

__all__ = ["DB_ENV", "HERE", "MACHINE_ENV", "SCHEMA_VERSION", "ResultsStore", "StoreError", "StoreUnavailable",
           "StoreWarning", "StoredResult", "default_path", "default_url", "local_path", "machine_label"]

#: Environment variable naming the database, a file or a URL (the ``--db`` option wins over it).
DB_ENV = "BACKBONES_RESULTS_DB"
#: Environment variable naming this machine in exports (default: the host name).
MACHINE_ENV = "BACKBONES_MACHINE"
#: The backend class of each URL scheme (see :func:`~backbones.results.backend.parse_database_url`).
BACKENDS = {"sqlite": SqliteBackend, "postgresql": PostgresBackend}
PUSH_HINT = "python -m backbones results --push"


class StoreWarning(UserWarning):
    """Something happened to the database the user should know about (a corrupt file was moved aside,
    rows that do not fit the schema were skipped, a result kept locally while the server was down)."""


def machine_label() -> str:
    """How this machine is named in exports: ``$BACKBONES_MACHINE``, else the host name."""
    return os.environ.get(MACHINE_ENV, "").strip() or platform.node() or "unknown machine"


def local_path() -> Path:
    """The embedded default, needing no server: ``cache_dir()/results.sqlite``."""
    return cache_dir() / "results.sqlite"


def default_url() -> str:
    """``$BACKBONES_RESULTS_DB`` (a file path or a database URL), else :func:`local_path`."""
    explicit = os.environ.get(DB_ENV, "").strip()
    return explicit or str(local_path())


def default_path() -> Path:
    """The SQLite file used by default: ``$BACKBONES_RESULTS_DB`` when it names one, else :func:`local_path`."""
    url = parse_database_url(default_url())
    return Path(url.target).expanduser() if url.scheme == "sqlite" else local_path()


def _insert_returning_id(cursor, row: tuple) -> int:
    """Insert ``row`` unless its uid is there already; the id of the row with that uid either way."""
    found = cursor.execute(INSERT + " RETURNING id", row).fetchone()
    if found is None:
        found = cursor.execute("SELECT id FROM results WHERE uid = ?", (row[0],)).fetchone()
    return int(found[0])


class ResultsStore:
    """Measurements in one database (see the module docstring).

    ``path`` is a file path or a database URL (default :func:`default_url`). ``notices``
    collects the warnings issued (for a UI to show); each is also a :class:`StoreWarning`.
    :attr:`where` names the database for messages (a PostgreSQL URL without its password).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, keep_locally: bool = False):
        url = parse_database_url(os.fspath(path) if path is not None else default_url())
        self.notices: list[str] = []
        self.backend = BACKENDS[url.scheme](url.target, self._notify)
        self.keep_locally = keep_locally
        #: Results :meth:`add` kept in the local default because this database was unreachable.
        self.kept_locally = 0

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on a server)."""
        return getattr(self.backend, "path", None)

    @property
    def where(self) -> str:
        """The database as shown to users: the file, or ``postgresql://user@host:port/db`` (never the password)."""
        return self.backend.where

    def __repr__(self) -> str:
        return f"ResultsStore({self.where!r})"

    def close(self) -> None:
        """Close a server connection now rather than when the store is garbage-collected."""
        getattr(self.backend, "close", lambda: None)()

    def _notify(self, message: str, *, row: int = 0) -> None:
        """Keep ``message`` for a UI and issue it as a :class:`StoreWarning`.

        Issued as about the database (``<results store>:<row id>``) rather than a line of
        code: an uncaught warning is then one line on stderr, whoever called the store.
        """
        self.notices.append(message)
        warnings.warn_explicit(message, StoreWarning, "<results store>", row)

    def check_health(self) -> None:
        """Check the database once: a corrupt SQLite file is moved aside (with a notice), an unreachable
        server is a :class:`StoreError`. Reads and writes do this themselves; a UI calls it to show it early."""
        self.backend.check_health()

    # ----------------------------------------------------------------- writing

    def _for_backend(self, row: tuple) -> tuple:
        """``row`` as this database keeps it: on a shared server, "here" becomes the machine it was measured on."""
        if self.backend.shared and row[4] == HERE:
            return row[:4] + (env_machine(json.loads(row[5])) or machine_label(),) + row[5:]
        return row

    def ensure_writable(self) -> None:
        """Create the database if needed; :class:`StoreError` now rather than after a long sweep.

        With ``keep_locally``, an unreachable server is fine as long as the local default is writable.
        """
        try:
            self.backend.ensure_writable()
        except StoreUnavailable:
            if not self.keep_locally:
                raise
            ResultsStore(local_path()).ensure_writable()

    def add(self, kind: str, model: str, payload: dict, *, env: dict | None = None, source: str = HERE,
            run_id: str | None = None) -> int:
        """Store one result (one transaction) and return its row id.

        ``env`` defaults to a minimal fingerprint (machine, host, time); measurement code
        passes the full one (:func:`backbones.measure.collect_env`). ``run_id`` (default: a new
        uuid) makes the insert idempotent: adding the same run id again returns the first row's id.
        NaN and infinity are stored as null (strict JSON); a row that does not fit the schema is a
        :class:`StoreError`.
        """
        if not isinstance(payload, dict):
            raise StoreError(f"a result's payload must be a dict, got {type(payload).__name__}")
        env = dict(env) if env is not None else {"machine": machine_label(), "hostname": platform.node(), "time": now_iso()}
        try:
            row = prepare_row(kind=kind, model=model, created=now_iso(), source=source or HERE,
                              env=json_safe(env), payload=json_safe(payload), uid=run_id or uuid.uuid4().hex)
        except RecordError as exc:
            raise StoreError(f"cannot store this result: {exc}") from exc
        try:
            return self.backend.write(lambda cursor: _insert_returning_id(cursor, self._for_backend(row)))
        except StoreUnavailable as exc:
            if not self.keep_locally:
                raise
            return self._keep_locally(row, exc)

    def _keep_locally(self, row: tuple, exc: StoreUnavailable) -> int:
        """Write ``row`` to the local default, marked for :meth:`push` to this database; warn."""
        local = ResultsStore(local_path())

        def keep(cursor) -> int:
            row_id = _insert_returning_id(cursor, row)
            cursor.execute("INSERT INTO pending_push (uid, target, kept) VALUES (?, ?, ?) ON CONFLICT (uid) DO NOTHING",
                           (row[0], self.where, now_iso()))
            return row_id

        row_id = local.backend.write(keep)
        self.kept_locally += 1
        self._notify(f"{exc}; kept this result in {local.where}: send it with `{PUSH_HINT}` once the server is back")
        return row_id

    def describe_stored(self, count: int) -> str:
        """Where ``count`` results just added went, in one line: this database, and the local
        default for those kept there while it was unreachable (never "stored in" a server that got none)."""
        kept = min(self.kept_locally, count)
        parts = [f"stored {count - kept} result(s) in {self.where}"] if count > kept else []
        if kept:
            parts.append(f"kept {kept} result(s) in {local_path()} for {self.where}: send with `{PUSH_HINT}`")
        return "; ".join(parts) or f"stored 0 results in {self.where}"

    def push(self) -> int:
        """Send the results kept locally for this database while it was unreachable; returns how many were sent.

        Rows already there (same run id) are not sent twice; each one sent is no longer pending.
        """
        local = ResultsStore(local_path())
        if local.where == self.where:
            raise StoreError(f"--push sends results kept in {local.where} to a server: name the server with "
                             f"--db URL or ${DB_ENV}")
        self.backend.check_health()  # a server still down is reported even with nothing to send
        columns = ", ".join("r." + c for c in COLUMNS)
        found = local.backend.read(f"SELECT {columns} FROM results r JOIN pending_push p ON p.uid = r.uid "
                                   "WHERE p.target = ? ORDER BY r.id", [self.where])
        valid = {r.uid for r in self._decode(found, local.where)}  # checked again: the file may have been edited
        rows = [tuple(row[1:]) for row in found if row[1] in valid]
        if not rows:
            return 0
        sent = self.backend.write(lambda cursor: insert_rows(cursor, [self._for_backend(row) for row in rows]))

        def forget(cursor) -> None:
            for row in rows:
                cursor.execute("DELETE FROM pending_push WHERE uid = ? AND target = ?", (row[0], self.where))

        local.backend.write(forget)
        return sent

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
        if self.path is not None and not self.path.exists():
            return 0  # deleting creates nothing
        sql = "DELETE FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        return self.backend.write(lambda cursor: cursor.execute(sql, args).rowcount)

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
                where.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "1 = 0")
                args.extend(values)
        return where, args

    def _select(self, sql: str, args: list) -> list[tuple]:
        """Rows of one read-only statement; none when there is no database or table yet."""
        return self.backend.read(sql, args)

    def _decode(self, found: list[tuple], where: str) -> list[StoredResult]:
        """Rows as :class:`StoredResult`; those that do not fit the schema skipped, with one notice."""
        results, skipped = [], []
        for row in found:
            try:
                results.append(decode_row(row))
            except RecordError as exc:
                skipped.append((row[0], exc))
        if skipped:
            first_id, reason = skipped[0]
            self._notify(
                f"skipped {len(skipped)} stored result(s) in {where} that do not fit the results schema "
                f"(first: id {first_id}: {reason})",
                row=first_id,
            )
        return results

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
        sql = f"SELECT {', '.join(COLUMNS)} FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        return self._decode(self._select(sql + " ORDER BY id", args), self.where)

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
        """How many rows the database holds (counted by the database; rows are not read)."""
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
            raise StoreError(f"cannot write {target}: {why(exc)}") from exc
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
            raise StoreError(f"cannot read {path}: {why(exc)}") from exc
        rows = [self._for_backend(row) for row in rows_from_json(text, path.name, source=source, now=now_iso())]
        # One transaction: all rows or none.
        return self.backend.write(lambda cursor: insert_rows(cursor, rows))
