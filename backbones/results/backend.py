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

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
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
    """``url`` with the password of its ``user:password@`` part replaced by ``***``.

    The password runs to the last ``@`` before any ``?`` or ``#``: one typed without
    percent-encoding its ``/`` or ``@`` is hidden too (a path with an ``@`` loses a little more).
    """
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^?#]*)", url)
    if match is None:
        return url
    head, body = match.group(1), match.group(2)
    user_end = body.rfind("@")
    colon = body.find(":", 0, user_end)
    if user_end < 0 or colon < 0 or body.startswith("/"):  # no user part ("file:///a:b@c" is a path)
        return url
    return head + body[:colon] + ":***" + body[user_end:] + url[match.end():]


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

# A scheme is two or more characters (a one-letter "scheme" is a Windows drive), then ':'.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
# libpq's keyword form starts with a keyword and '=' (``host=db.lab dbname=lens``).
_KEYWORD = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
_POSTGRES_FORMS = ("postgresql://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode / @ : in the password) "
                   "or libpq keywords host=HOST port=PORT dbname=DATABASE user=USER password='PASSWORD'")
_FORMS = f"use a file path, sqlite:///FILE, {_POSTGRES_FORMS}"


@dataclass(frozen=True)
class DatabaseURL:
    """Where the results live, decided once by :func:`parse_database_url`.

    ``scheme`` is "sqlite" or "postgresql"; ``target`` the SQLite file path or the libpq
    connection string (a URL or keywords, with its password: never printed, left out of
    ``repr``); ``where`` names the database for messages (never with a password).
    """

    scheme: str
    target: str = field(repr=False)
    where: str = ""

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "where": self.where}  # the target may hold a password


def postgres_params(text: str, form: str) -> dict[str, str]:
    """libpq's own reading of a URL or keyword string, or one line that quotes none of it (it may hold a password)."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:
        raise StoreError("a PostgreSQL results database needs psycopg: pip install 'psycopg[binary]'") from exc
    try:
        return {k: str(v) for k, v in conninfo_to_dict(text).items()}
    except Exception:  # psycopg.ProgrammingError; its message may quote the text, password included
        # from None: a traceback printing the cause would show that text.
        raise StoreError(f"the results database {form} cannot be read as a PostgreSQL connection string: "
                         f"{_POSTGRES_FORMS}") from None


def postgres_where(params: dict[str, str]) -> str:
    user = params.get("user") or ""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    dbname = params.get("dbname") or user or "postgres"
    return f"postgresql://{user + '@' if user else ''}{host}:{params.get('port') or '5432'}/{dbname}"


def parse_database_url(text: str) -> DatabaseURL:
    """Decide what ``text`` names: a SQLite file or a PostgreSQL database, or :class:`StoreError`.

    Accepted: a plain file path; ``sqlite:///relative/file`` or ``sqlite:////absolute/file`` (as in
    SQLAlchemy); ``postgresql://`` / ``postgres://`` URLs; a libpq keyword string
    (``host=db.lab port=5432 dbname=lens user=lens password='a b'``). Anything else with a scheme
    (``postgresql:/x``, ``mysql://``, ``http://``, ``name:thing``) or in the keyword shape that libpq
    cannot read is refused with one line that never holds the text (it may hold a password); a file
    whose name looks like either is named ``./name``. In a URL, a password holding ``/``, ``@`` or
    ``:`` must be percent-encoded (libpq would take part of it for the host): an ``@`` after the
    host is refused rather than guessed.
    """
    text = os.fspath(text)
    match = _SCHEME.match(text)
    if match is not None:
        scheme = match.group(1).lower()
        rest = text[match.end():]
        if scheme == "sqlite":
            if not rest.startswith("///") or rest == "///":
                raise StoreError("a SQLite database URL is sqlite:///relative/file or sqlite:////absolute/file")
            return DatabaseURL("sqlite", rest[3:], rest[3:])
        if scheme in ("postgresql", "postgres"):
            if not rest.startswith("//"):
                raise StoreError(f"a {scheme}: results database URL starts with {scheme}:// ({_POSTGRES_FORMS})")
            after_host = rest[2:].partition("/")[2].partition("?")[0]
            if "@" in after_host or rest[2:].partition("/")[0].count("@") > 1:
                raise StoreError("the postgresql:// results database URL has an '@' after its host: percent-encode "
                                 "'/', '@' and ':' in the password (%2F, %40, %3A) or use the keyword form "
                                 "password='...'")
            params = postgres_params(text, "URL")
            return DatabaseURL("postgresql", text, postgres_where(params))
        raise StoreError(f"unsupported results database URL scheme {scheme[:20]!r}: {_FORMS} "
                         "(a file whose name has a colon: ./NAME)")
    if _KEYWORD.match(text):
        params = postgres_params(text, "keyword string (a file whose name has '=': ./NAME)")
        return DatabaseURL("postgresql", text, postgres_where(params))
    if not text.strip():
        raise StoreError(f"the results database is empty: {_FORMS}")
    return DatabaseURL("sqlite", text, text)
