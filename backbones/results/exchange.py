"""Results as JSON files: the export document, and imports checked in full before anything is stored.

An import is bounded before it is read (file size) and before it is checked (row
count), then every row must fit the schema (:mod:`backbones.results.records`); the
first bad row refuses the whole file with a one-line :class:`StoreError` such as
``results.json: row 17: payload.top1 must be a number, got str`` (rows count from 1).
"""

from __future__ import annotations

import json
import os

from backbones.errors import StoreError
from backbones.jsonsafe import json_safe
from backbones.results.records import HERE, RecordError, StoredResult, prepare_row

EXPORT_FORMAT = "backbone-lens-results"
EXPORT_VERSION = 1
#: Environment variable capping the rows one import may hold.
MAX_IMPORT_ROWS_ENV = "BACKBONES_RESULTS_MAX_IMPORT_ROWS"
DEFAULT_MAX_IMPORT_ROWS = 20_000
MAX_IMPORT_BYTES = 50 * 1024 * 1024


def max_import_rows() -> int:
    """``$BACKBONES_RESULTS_MAX_IMPORT_ROWS``, else 20,000."""
    text = os.environ.get(MAX_IMPORT_ROWS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMPORT_ROWS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise StoreError(f"${MAX_IMPORT_ROWS_ENV} must be a positive whole number, got {text[:20]!r}")
    return value


def check_import_size(size: int, name: str) -> None:
    """:class:`StoreError` for an import over :data:`MAX_IMPORT_BYTES`: checked before it is read."""
    if size > MAX_IMPORT_BYTES:
        raise StoreError(
            f"{name} is {size / 2**20:.1f} MiB; results imports are limited to {MAX_IMPORT_BYTES // 2**20} MiB"
        )


def export_text(rows: list[StoredResult], *, machine: str, exported: str) -> str:
    """The export document for ``rows`` (what ``results --export`` writes)."""
    document = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported": exported,
        "machine": machine,
        "results": [_shareable(r.to_dict()) for r in rows],
    }
    return json.dumps(json_safe(document), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


#: Payload fields that describe this machine's disk and never leave it (rows stored before they were dropped).
PRIVATE_PAYLOAD_FIELDS = ("dataset_path",)


def _shareable(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k != "id"}
    if isinstance(out.get("payload"), dict):
        out["payload"] = {k: v for k, v in out["payload"].items() if k not in PRIVATE_PAYLOAD_FIELDS}
    return out


def rows_from_json(text: str, name: str, *, source: str | None, now: str) -> list[tuple]:
    """Rows ready to insert (see :func:`prepare_row`) from the text of an export or a ``bench --json`` list.

    ``name`` is the file's name for messages; ``now`` the ``created`` time of rows that carry none.
    """
    try:
        document = json.loads(text)
    except RecursionError as exc:
        raise StoreError(f"{name} is nested too deeply to be a results file") from exc
    except ValueError as exc:
        raise StoreError(f"{name} is not valid JSON: {exc}") from exc
    return rows_from_document(document, name, source=source, now=now)


def rows_from_document(document, name: str, *, source: str | None, now: str) -> list[tuple]:
    """Rows ready to insert from a decoded export document or ``bench --json`` list; all or none."""
    items, file_machine = _items(document, name)
    limit = max_import_rows()
    if len(items) > limit:
        raise StoreError(
            f"{name} holds {len(items)} rows; at most {limit} are imported at once (${MAX_IMPORT_ROWS_ENV})"
        )
    rows = []
    for i, item in enumerate(items, start=1):
        try:
            rows.append(_row(item, source, file_machine, now))
        except RecordError as exc:
            raise StoreError(f"{name}: row {i}: {exc}") from exc
    return rows


def _items(document, name: str) -> tuple[list, object]:
    """``(row objects, the export's machine)`` from either accepted document shape."""
    if isinstance(document, dict):
        if document.get("format") != EXPORT_FORMAT:
            raise StoreError(f"{name} is not a Backbone Lens results export (no \"format\": \"{EXPORT_FORMAT}\")")
        version = document.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version > EXPORT_VERSION:
            shown = version if isinstance(version, int) else type(version).__name__
            raise StoreError(f"{name}: unsupported export version {shown} (this version reads {EXPORT_VERSION})")
        items = document.get("results")
        if not isinstance(items, list):
            raise StoreError(f"{name}: \"results\" must be a list")
        return items, document.get("machine")
    if isinstance(document, list):  # the output of `bench --json`: each item is a latency payload
        items = []
        for i, item in enumerate(document, start=1):
            if not isinstance(item, dict) or "model" not in item or "median_ms" not in item:
                raise StoreError(f"{name}: row {i} is not a benchmark result (needs \"model\" and \"median_ms\")")
            env = item.get("env")
            created = env.get("time") if isinstance(env, dict) else None
            items.append({"kind": "latency", "model": item["model"], "env": env, "payload": item, "created": created})
        return items, None
    raise StoreError(f"{name} is not a Backbone Lens results export (expected an object or a list)")


def _row(item, source: str | None, file_machine, now: str) -> tuple:
    if not isinstance(item, dict):
        raise RecordError(f"a row must be an object, got {type(item).__name__}")
    env = item.get("env")
    env = {} if env is None else env
    own = item.get("source")
    row_source = (
        source
        or (own if own and own != HERE else None)
        or env_machine(env)
        or (file_machine if file_machine else None)
        or "imported"
    )
    return prepare_row(
        kind=item.get("kind"),
        model=item.get("model"),
        created=item.get("created") or (env.get("time") if isinstance(env, dict) else None) or now,
        source=row_source,
        env=env,
        payload=item.get("payload"),
        uid=item.get("uid") or None,
    )


def env_machine(env) -> str | None:
    """The machine an environment fingerprint names (``machine``, else ``hostname``), or None."""
    if not isinstance(env, dict):
        return None  # the row check reports the bad env
    for key in ("machine", "hostname"):
        value = env.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None

