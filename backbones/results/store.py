"""The results store: measurements kept in an embedded SQLite database.

One row per measurement (``kind`` "latency" for benchmarks, "evaluation" for dataset
evaluations), with the environment it was measured in and where it comes from
(``source``: "here", or the machine a JSON export was made on)::

    store = ResultsStore()                      # cache_dir()/results.sqlite, or $BACKBONES_RESULTS_DB
    row_id = store.add("latency", "resnet18", result.to_record(), env=result.env)
    rows = store.query(kind="latency")          # [StoredResult, ...] oldest first
    store.export_json("mine.json")              # take it to a colleague ...
    store.import_json("gpu-box.json")           # ... or bring theirs: source = their machine label

Durability: each ``add`` is one transaction in SQLite's rollback journal, so a process
killed mid-sweep leaves every earlier row intact. A database file that is not a
database (or fails SQLite's integrity check) is renamed ``<name>.corrupt-<timestamp>``
and a new one started, with a :class:`StoreWarning`. A database that cannot be written
(read-only file or directory) raises :class:`StoreError` on writes; reads still work and
nothing is lost. This module imports no torch: it is cheap to use anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sqlite3
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from backbones.errors import StoreError
from backbones.jsonsafe import json_safe
from backbones.paths import cache_dir

#: Environment variable naming the database file (the ``--db`` option wins over it).
DB_ENV = "BACKBONES_RESULTS_DB"
#: Environment variable naming this machine in exports (default: the host name).
MACHINE_ENV = "BACKBONES_MACHINE"
HERE = "here"
EXPORT_FORMAT = "backbone-lens-results"
EXPORT_VERSION = 1
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


class StoreWarning(UserWarning):
    """Something happened to the database the user should know about (a corrupt file was moved aside)."""


def machine_label() -> str:
    """How this machine is named in exports: ``$BACKBONES_MACHINE``, else the host name."""
    return os.environ.get(MACHINE_ENV, "").strip() or platform.node() or "unknown machine"


def default_path() -> Path:
    """``$BACKBONES_RESULTS_DB``, else ``cache_dir()/results.sqlite``."""
    explicit = os.environ.get(DB_ENV, "").strip()
    return Path(explicit).expanduser() if explicit else cache_dir() / "results.sqlite"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dumps(obj) -> str:
    try:
        return json.dumps(json_safe(obj), ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"result is not JSON-serializable: {exc}") from exc


@dataclass(frozen=True)
class StoredResult:
    """One row of the store."""

    id: int
    kind: str
    model: str
    created: str  # ISO 8601, UTC
    source: str  # "here" or the machine it was measured on
    env: dict = field(compare=False, hash=False)
    payload: dict = field(compare=False, hash=False)
    uid: str = ""

    @property
    def source_label(self) -> str:
        """``measured here`` or ``measured on <machine>`` (for legends)."""
        return "measured here" if self.source == HERE else f"measured on {self.source}"

    def to_dict(self) -> dict:
        return asdict(self)


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
    the warnings issued (for a UI to show).
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

    def _healthy(self) -> None:
        """Once per store: move a corrupt file aside (with a warning) before it is used."""
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
            self.notices.append(message)
            warnings.warn(message, StoreWarning, stacklevel=5)
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
                return sum(
                    conn.execute(
                        "INSERT OR IGNORE INTO results (uid, kind, model, created, source, env, payload) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        row,
                    ).rowcount
                    for row in rows
                )
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
        self._healthy()
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
        self._healthy()
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
        passes the full one (:func:`backbones.measure.collect_env`).
        """
        if not isinstance(kind, str) or not kind:
            raise StoreError("a result needs a kind (e.g. 'latency')")
        if not isinstance(model, str) or not model:
            raise StoreError("a result needs a model name")
        if not isinstance(payload, dict):
            raise StoreError(f"a result's payload must be a dict, got {type(payload).__name__}")
        env = dict(env) if env is not None else {"machine": machine_label(), "hostname": platform.node(), "time": _now()}
        row = (uuid.uuid4().hex, kind, model, _now(), source or HERE, _dumps(env), _dumps(payload))
        conn = self._writer()
        try:
            with conn:
                cur = conn.execute(
                    "INSERT INTO results (uid, kind, model, created, source, env, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
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
    def _where(**filters) -> tuple[list[str], list]:
        where, args = [], []
        for column, value in filters.items():
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        return where, args

    def query(self, kind: str | None = None, model: str | None = None, source: str | None = None) -> list[StoredResult]:
        """Rows matching every given filter, oldest first."""
        conn = self._reader()
        if conn is None:
            return []
        where, args = self._where(kind=kind, model=model, source=source)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        try:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise StoreError(f"cannot read results database {self.path}: {_why(exc)}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read results database {self.path}: {_why(exc)}") from exc
        finally:
            conn.close()
        return [self._row(r) for r in rows]

    @staticmethod
    def _row(r) -> StoredResult:
        id_, uid, kind, model, created, source, env, payload = r
        try:
            env_obj, payload_obj = json.loads(env), json.loads(payload)
        except ValueError:  # a row written by something else: show it rather than fail everything
            env_obj, payload_obj = {}, {"unreadable": payload}
        return StoredResult(
            id=id_, kind=kind, model=model, created=created, source=source, env=env_obj, payload=payload_obj, uid=uid
        )

    def sources(self) -> list[str]:
        """Distinct sources, ``"here"`` first."""
        seen = {r.source for r in self.query()}
        return sorted(seen, key=lambda s: (s != HERE, s))

    def count(self) -> int:
        return len(self.query())

    # ----------------------------------------------------------------- JSON exchange

    def export_json(self, path: str | os.PathLike, *, kind: str | None = None) -> int:
        """Write every row (or one kind) to a JSON file, atomically; returns the row count."""
        rows = self.query(kind=kind)
        document = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported": _now(),
            "machine": machine_label(),
            "results": [
                {k: v for k, v in r.to_dict().items() if k != "id"} for r in rows
            ],
        }
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(json_safe(document), indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
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
        nothing. The file is validated first; nothing is added unless every row is valid.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read {path}: {_why(exc)}") from exc
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{path.name} is not valid JSON: {_why(exc)}") from exc
        rows = _validated_rows(document, path.name, source)
        conn = self._writer()
        added = 0
        try:
            with conn:  # one transaction: all rows or none
                for row in rows:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO results (uid, kind, model, created, source, env, payload) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    added += cur.rowcount
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        finally:
            conn.close()
        return added


def _validated_rows(document, name: str, source: str | None) -> list[tuple]:
    """Rows ready to insert from an export document or a ``bench --json`` list."""
    if isinstance(document, dict):
        if document.get("format") != EXPORT_FORMAT:
            raise StoreError(f"{name} is not a Backbone Lens results export (no \"format\": \"{EXPORT_FORMAT}\")")
        version = document.get("version")
        if not isinstance(version, int) or version > EXPORT_VERSION:
            raise StoreError(f"{name}: unsupported export version {version!r} (this version reads {EXPORT_VERSION})")
        items = document.get("results")
        file_machine = document.get("machine") if isinstance(document.get("machine"), str) else None
        if not isinstance(items, list):
            raise StoreError(f"{name}: \"results\" must be a list")
    elif isinstance(document, list):  # the output of `bench --json`
        items, file_machine = [], None
        for i, item in enumerate(document):
            if not isinstance(item, dict) or "model" not in item or "median_ms" not in item:
                raise StoreError(f"{name}: item {i} is not a benchmark result (needs \"model\" and \"median_ms\")")
            env = item.get("env") if isinstance(item.get("env"), dict) else {}
            items.append({"kind": "latency", "model": item["model"], "env": env, "payload": item,
                          "created": env.get("time")})
    else:
        raise StoreError(f"{name} is not a Backbone Lens results export (expected an object or a list)")

    rows = []
    for i, item in enumerate(items):
        where = f"{name}: result {i}"
        if not isinstance(item, dict):
            raise StoreError(f"{where} is not an object")
        kind, model, payload = item.get("kind"), item.get("model"), item.get("payload")
        env = item.get("env", {})
        if not isinstance(kind, str) or not kind:
            raise StoreError(f"{where}: \"kind\" must be a non-empty string")
        if not isinstance(model, str) or not model:
            raise StoreError(f"{where}: \"model\" must be a non-empty string")
        if not isinstance(payload, dict):
            raise StoreError(f"{where}: \"payload\" must be an object")
        if env is None:
            env = {}
        if not isinstance(env, dict):
            raise StoreError(f"{where}: \"env\" must be an object")
        created = item.get("created") or env.get("time") or _now()
        if not isinstance(created, str):
            raise StoreError(f"{where}: \"created\" must be a string")
        own = item.get("source")
        if own is not None and not isinstance(own, str):
            raise StoreError(f"{where}: \"source\" must be a string")
        row_source = source or (own if own and own != HERE else None) or _env_machine(env) or file_machine or "imported"
        uid = item.get("uid")
        if uid is not None and not isinstance(uid, str):
            raise StoreError(f"{where}: \"uid\" must be a string")
        env_text, payload_text = _dumps(env), _dumps(payload)
        if not uid:  # stable across imports of the same file, so a second import adds nothing
            uid = hashlib.sha256("\0".join((kind, model, created, env_text, payload_text)).encode()).hexdigest()[:32]
        rows.append((uid, kind, model, created, row_source, env_text, payload_text))
    return rows


def _env_machine(env: dict) -> str | None:
    for key in ("machine", "hostname"):
        value = env.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
