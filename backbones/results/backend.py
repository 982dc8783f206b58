"""What every results database does the same way: the versioned schema, its migrations, database URLs.

A backend (:class:`~backbones.results.sqlite_backend.SqliteBackend`,
:class:`~backbones.results.postgres_backend.PostgresBackend`) only knows how to connect, how to
run a transaction and how its driver's errors read; the store writes its SQL once, with ``?``
placeholders, for both. The schema is the same on both: ``results`` (one row per measurement,
``uid`` unique: inserts are idempotent), ``pending_push`` (rows kept locally while a server was
down) and ``schema_version``. Migrations are applied in order on the first write; a database
written by a newer Backbone Lens is refused rather than written with an older idea of its rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from backbones.errors import StoreError

#: The schema this version of Backbone Lens reads and writes.
SCHEMA_VERSION = 2
#: Schema changes, one tuple of statements per version; ``{id}`` is the backend's auto-numbered key column.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS results (
            id      {id},
            uid     TEXT NOT NULL UNIQUE,
            kind    TEXT NOT NULL,
            model   TEXT NOT NULL,
            created TEXT NOT NULL,
            source  TEXT NOT NULL,
            env     TEXT NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS results_kind_model ON results (kind, model)",
    ),
    # Results a bench/eval kept in the local store because the server it was meant for was unreachable;
    # `results --push` sends them and deletes these entries (the rows stay in the local history).
    2: ("CREATE TABLE IF NOT EXISTS pending_push (uid TEXT PRIMARY KEY, target TEXT NOT NULL, kept TEXT NOT NULL)",),
}
COLUMNS = ("id", "uid", "kind", "model", "created", "source", "env", "payload")
#: Insert one row (uid, kind, model, created, source, env, payload); a uid already there is left as it is.
INSERT = ("INSERT INTO results (uid, kind, model, created, source, env, payload) VALUES (?, ?, ?, ?, ?, ?, ?) "
          "ON CONFLICT (uid) DO NOTHING")

#: A row that proves the database can be written (inserted, then rolled back); its uid is the only argument.
PROBE = "INSERT INTO results (uid, kind, model, created, source, env, payload) VALUES (?, '', '', '', '', '', '')"


def insert_rows(cursor, rows) -> int:
    """Insert each ``(uid, kind, model, created, source, env, payload)``; how many were new (uids not there yet)."""
    return sum(cursor.execute(INSERT, row).rowcount for row in rows)


T = TypeVar("T")
Work = Callable[[object], T]  # gets a DB-API cursor taking ``?`` placeholders


class StoreUnavailable(StoreError):
    """The database server cannot be reached or refuses us (down, wrong password): nothing was written there."""


def why(exc: BaseException) -> str:
    """The first line of an error's message (drivers add hints on further lines)."""
    return str(exc).splitlines()[0].strip() if str(exc).strip() else type(exc).__name__


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/]*@", r"\1:***@", url)


def newer_schema_error(where: str, found: int) -> StoreError:
    return StoreError(
        f"results database {where} has schema version {found}, newer than this Backbone Lens understands "
        f"({SCHEMA_VERSION}); upgrade it (pip install -U -r requirements.txt) before using this database"
    )


class Backend:
    """One database. Subclasses set :attr:`ID_COLUMN` and implement :meth:`write`, :meth:`read`,
    :meth:`check_health` and :meth:`ensure_writable`; the schema logic here is shared."""

    #: Column definition of the auto-numbered row id.
    ID_COLUMN = "INTEGER PRIMARY KEY"
    #: A server several machines write to ("here" means nothing there: rows name their machine).
    shared = False
    #: How the database is named in messages (never with a password).
    where = ""

    def write(self, work: Work) -> T:
        """Run ``work(cursor)`` in one transaction on an up-to-date schema; commit, or roll back and raise StoreError."""
        raise NotImplementedError

    def read(self, sql: str, args: list) -> list[tuple]:
        """Rows of one statement; none when there is no database or table yet."""
        raise NotImplementedError

    def check_health(self) -> None:
        """Check (once) that the database can be used; a UI calls it to show problems early."""

    def ensure_writable(self) -> None:
        """:class:`StoreError` now unless a row could be written."""
        raise NotImplementedError

    # ----------------------------------------------------------------- schema

    def has_table(self, cursor, name: str) -> bool:
        raise NotImplementedError

    def legacy_version(self, cursor) -> int:
        """The schema version of a database from before the schema_version table (0: none)."""
        return 0

    def lock_schema(self, cursor) -> None:
        """Keep other clients out while the schema is checked and upgraded (within the transaction)."""

    def schema_version(self, cursor) -> int:
        """The version this database's schema is at (0: empty)."""
        if not self.has_table(cursor, "schema_version"):
            return self.legacy_version(cursor)
        found = cursor.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        return int(found) if found is not None else self.legacy_version(cursor)

    def check_version(self, cursor) -> int:
        """The schema version, or :class:`StoreError` when a newer Backbone Lens wrote this database."""
        found = self.schema_version(cursor)
        if found > SCHEMA_VERSION:
            raise newer_schema_error(self.where, found)
        return found

    def migrate(self, cursor) -> None:
        """Apply the migrations this database lacks, in order, in the caller's transaction."""
        self.lock_schema(cursor)
        found = self.check_version(cursor)
        if found == SCHEMA_VERSION:
            return  # no DDL at all: a user allowed only to read and insert rows can still write
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                cursor.execute(statement.format(id=self.ID_COLUMN))
        cursor.execute("DELETE FROM schema_version")
        cursor.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


# --------------------------------------------------------------------- database URLs

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class DatabaseURL:
    """Where the results live: ``scheme`` ("sqlite" or "postgresql") and the rest of the text."""

    scheme: str
    target: str  # sqlite: the file path; postgresql: the whole URL (with its password: never print it)

    def to_dict(self) -> dict:
        return {"scheme": self.scheme}  # the target may hold a password


def parse_database_url(text: str) -> DatabaseURL:
    """A file path or ``sqlite:///path`` (SQLite) or ``postgresql://user:pass@host:port/db`` (PostgreSQL).

    ``sqlite:///relative.sqlite`` and ``sqlite:////absolute/path.sqlite``, as in SQLAlchemy.
    """
    match = _URL.match(text)
    if match is None:
        return DatabaseURL("sqlite", text)
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        path = text[match.end():]
        if not path.startswith("/") or path == "/":
            raise StoreError("a SQLite database URL is sqlite:///relative/file or sqlite:////absolute/file")
        return DatabaseURL("sqlite", path[1:])
    if scheme in ("postgresql", "postgres"):
        return DatabaseURL("postgresql", text)
    raise StoreError(
        f"unsupported results database URL scheme {scheme[:20]!r}: use a file path, sqlite:///FILE "
        "or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    )
