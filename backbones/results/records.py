"""Result records: the typed row (:class:`StoredResult`) and the schema every row must fit.

The same check guards every way into and out of the store: :meth:`ResultsStore.add`,
JSON imports (the whole file is refused at the first bad row) and reads (a row put
there by other means is skipped with a notice). Rows are shown to every visitor of
the dashboard, so names (model, source, dataset, machine) are plain text: no control
or bidi-format characters and no ``<`` ``>`` (chart legends render HTML). Messages
name the field and the type or number found, never the offending text itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from backbones.errors import StoreError

HERE = "here"
#: The kinds of measurement the store keeps (payloads: ``BenchmarkResult.to_record()``,
#: ``EvaluationResult.to_store_payload()``, ``TransferRow.to_store_payload()``).
KINDS = ("latency", "evaluation", "transfer")
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 4096
MAX_DEPTH = 32
_UID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Cc control, Cf format (U+202E and other bidi overrides, zero-width), Cs lone surrogates,
# Zl/Zp line and paragraph separators.
_NOT_PLAIN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


class RecordError(StoreError):
    """A row that does not fit the results schema (one line: the field and what was found)."""


def now_iso() -> str:
    """The current time, ISO 8601 in UTC to the second (how rows are timestamped)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


# ----------------------------------------------------------------------------- checks
# A check is ``check(value, where)``: it returns nothing or raises RecordError naming ``where``.
Check = Callable[[object, str], None]


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _fail(where: str, expected: str, value) -> RecordError:
    return RecordError(f"{where} must be {expected}, got {_type_name(value)}")


def _check_text(value, where: str, max_chars: int = MAX_TEXT_CHARS) -> None:
    if not isinstance(value, str):
        raise _fail(where, "a string", value)
    if len(value) > max_chars:
        raise RecordError(f"{where} must be at most {max_chars} characters, got {len(value)}")
    if any(unicodedata.category(c) == "Cs" for c in value):  # cannot be stored as UTF-8
        raise RecordError(f"{where} holds a lone surrogate (invalid Unicode)")


def check_name(value, where: str) -> None:
    """A name shown in tables and chart legends: a non-empty plain-text string."""
    _check_text(value, where, MAX_NAME_CHARS)
    if not value.strip():
        raise RecordError(f"{where} must not be empty")
    for i, c in enumerate(value):
        if c in "<>" or unicodedata.category(c) in _NOT_PLAIN:
            raise RecordError(
                f"{where} must be plain text (no control characters or < >), got U+{ord(c):04X} at position {i}"
            )


def _check_json(value, where: str, depth: int = 0) -> None:
    """Any JSON value: finite numbers, bounded strings and keys, at most MAX_DEPTH levels."""
    if depth > MAX_DEPTH:
        raise RecordError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"{where} must be a finite number, got {value}")
        return
    if isinstance(value, str):
        _check_text(value, where)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for i, (key, item) in enumerate(value.items()):
            _check_text(key, f"{where} key {i}", MAX_NAME_CHARS)
            _check_json(item, _field(where, key, i), depth + 1)
        return
    raise _fail(where, "a JSON value", value)


def _field(where: str, key: str, index: int) -> str:
    # Keys come from the file: only plain ones are echoed (messages reach Markdown renderers).
    return f"{where}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{where}[key {index}]"


def _number(lo: float = 0.0, hi: float = 1e12, *, integer: bool = False, nullable: bool = True) -> Check:
    expected = "an integer" if integer else "a number"

    def check(value, where: str) -> None:
        if value is None and nullable:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise _fail(where, expected, value)
        if not math.isfinite(value):
            raise RecordError(f"{where} must be a finite number, got {value}")
        if not lo <= value <= hi:
            raise RecordError(f"{where} must be between {lo:g} and {hi:g}, got {value:g}")

    return check


def _text(*, nullable: bool = True, name: bool = False) -> Check:
    def check(value, where: str) -> None:
        if value is None and nullable:
            return
        (check_name if name else _check_text)(value, where)

    return check


def _list_of(item: Check) -> Check:
    def check(value, where: str) -> None:
        if not isinstance(value, list):
            raise _fail(where, "a list", value)
        for i, v in enumerate(value):
            item(v, f"{where}[{i}]")

    return check


def _map_of(item: Check) -> Check:
    def check(value, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        for i, (key, v) in enumerate(value.items()):
            _check_text(key, f"{where} key {i}", MAX_NAME_CHARS)
            item(v, _field(where, key, i))

    return check


def _object(fields: dict[str, Check], *, nullable: bool = False) -> Check:
    """An object whose known fields have a type; other fields are any bounded JSON."""

    def check(value, where: str) -> None:
        if value is None and nullable:
            return
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        _check_json(value, where)  # depth, finiteness and sizes of everything, known or not
        for key, field_check in fields.items():
            if key in value:
                field_check(value[key], f"{where}.{key}")

    return check


def _any_object(value, where: str) -> None:
    # Inside an _object its contents were already walked by _check_json: only the type is left.
    if value is not None and not isinstance(value, dict):
        raise _fail(where, "an object", value)


def _any_bool(value, where: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise _fail(where, "true or false", value)


_MS = _number(0.0, 1e9)
_COUNT = _number(0, 10**15, integer=True)
_FRACTION = _number(0.0, 1.0)
_SETTING = _number(1, 10**6, integer=True)

ENV = _object(
    {
        "machine": _text(name=True),
        "hostname": _text(name=True),
        "device": _text(),
        "device_name": _text(),
        "time": _text(),
        "threads": _number(0, 10**6, integer=True),
        "batch_size": _number(1, 10**6, integer=True),
        "cpu_count": _number(0, 10**6, integer=True),
        "input_size": _list_of(_number(1, 10**6, integer=True)),
    }
)

#: What ``BenchmarkResult.to_record()`` writes (``bench --json`` items are the same without ``details``).
LATENCY_PAYLOAD = _object(
    {
        "model": _text(name=True),
        "device": _text(),
        "batch_size": _SETTING,
        "threads": _number(0, 10**6, integer=True),
        "input_size": _list_of(_number(1, 10**6, integer=True)),
        "median_ms": _MS,
        "p10_ms": _MS,
        "p90_ms": _MS,
        "mean_ms": _MS,
        "std_ms": _MS,
        "runs": _COUNT,
        "throughput_ips": _number(0.0, 1e12),
        "params": _COUNT,
        "macs": _COUNT,
        "size_mib": _number(0.0, 1e9),
        "env": _any_object,
        "details": _any_object,
    }
)

#: What ``EvaluationResult.to_store_payload()`` writes.
EVALUATION_PAYLOAD = _object(
    {
        "model": _text(name=True),
        "dataset": _text(name=True),
        "n": _COUNT,
        "skipped": _COUNT,
        "excluded": _COUNT,
        "misclassified_count": _COUNT,
        "top1": _FRACTION,
        "top5": _FRACTION,
        "top1_error": _FRACTION,
        "top5_error": _FRACTION,
        "topk": _SETTING,
        "per_class": _map_of(_FRACTION),
        "per_class_n": _map_of(_COUNT),
        "labels": _list_of(_text(nullable=False)),
        "confusion_columns": _list_of(_text(nullable=False)),
        "confusion": _list_of(_list_of(_COUNT)),
        "elapsed_s": _number(0.0, 1e9),
        "images_per_second": _number(0.0, 1e12),
        "metric": _text(),
        "notes": _list_of(_text(nullable=False)),
    }
)

_SCORE = _object({"top1": _FRACTION, "k": _SETTING, "top5": _FRACTION, "mean_class": _FRACTION,
                  "top1_ci": _list_of(_FRACTION), "C": _number(0.0, 1e12)}, nullable=True)

#: What ``TransferRow.to_store_payload()`` writes: one backbone's probes on a user's dataset.
TRANSFER_PAYLOAD = _object(
    {
        "model": _text(name=True),
        "architecture": _text(),
        "weights": _text(),
        "dataset": _text(name=True),
        "n": _COUNT,
        "skipped": _COUNT,
        "classes": _COUNT,
        "splits": _map_of(_COUNT),
        "feature_dim": _COUNT,
        "top1": _FRACTION,
        "top1_ci": _list_of(_FRACTION),
        "top5": _FRACTION,
        "mean_class": _FRACTION,
        "C": _number(0.0, 1e12),
        "knn_top1": _FRACTION,
        "knn_k": _number(1, 10**6, integer=True),
        "logme": _number(-1e12, 1e12),
        "extract_images_per_s": _number(0.0, 1e12),
        "cached": _any_bool,
        "per_class": _map_of(_FRACTION),
        "metric": _text(),
        "linear": _SCORE,
        "knn": _SCORE,
    }
)

PAYLOADS = {"latency": LATENCY_PAYLOAD, "evaluation": EVALUATION_PAYLOAD, "transfer": TRANSFER_PAYLOAD}


def _check_created(value, where: str) -> None:
    _check_text(value, where, 64)
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecordError(f"{where} must be an ISO 8601 time") from exc


def check_record(*, kind, model, created, source, env, payload, uid) -> None:
    """Raise :class:`RecordError` (one line, naming the first bad field) unless the row fits the schema.

    ``env`` and ``payload`` are the decoded JSON objects.
    """
    if kind not in KINDS:
        got = "an unknown name" if isinstance(kind, str) else _type_name(kind)
        raise RecordError(f"kind must be one of {', '.join(KINDS)}, got {got}")
    check_name(model, "model")
    _check_created(created, "created")
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise RecordError("uid must be 1 to 64 letters, digits or _.:-")
    ENV(env, "env")
    PAYLOADS[kind](payload, "payload")
    check_name(source, "source")  # last: an import may derive it from env.machine, reported there first


def dumps_strict(obj) -> str:
    """The JSON text a row keeps (sorted keys, no NaN: :func:`check_record` let none through)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, allow_nan=False)


def prepare_row(*, kind, model, created, source, env, payload, uid: str | None = None) -> tuple:
    """``(uid, kind, model, created, source, env JSON, payload JSON)``, checked, ready to insert.

    Without ``uid`` one is derived from the content, so importing the same file twice adds nothing.
    """
    check_record(kind=kind, model=model, created=created, source=source, env=env, payload=payload,
                 uid="derived" if uid is None else uid)
    env_text, payload_text = dumps_strict(env), dumps_strict(payload)
    if uid is None:
        uid = hashlib.sha256("\0".join((kind, model, created, env_text, payload_text)).encode()).hexdigest()[:32]
    return (uid, kind, model, created, source, env_text, payload_text)


def decode_row(row: tuple) -> StoredResult:
    """A :class:`StoredResult` from ``(id, uid, kind, model, created, source, env, payload)`` as stored.

    Raises :class:`RecordError` for a row that does not fit the schema (written by something else).
    """
    id_, uid, kind, model, created, source, env_text, payload_text = row
    objects = []
    for column, text in (("env", env_text), ("payload", payload_text)):
        if not isinstance(text, str):
            raise _fail(column, "JSON text", text)
        try:
            objects.append(json.loads(text))
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"{column} is not valid JSON") from exc
    env, payload = objects
    check_record(kind=kind, model=model, created=created, source=source, env=env, payload=payload, uid=uid)
    return StoredResult(id=id_, kind=kind, model=model, created=created, source=source, env=env, payload=payload, uid=uid)
