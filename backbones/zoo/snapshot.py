"""The catalog kept in a file: ``data/catalog.json``, written for the installed torchvision and timm.

Reading the catalog from the libraries imports torchvision and timm (seconds on a fresh server, and
torch with them); every page's first paint reads the catalog, and needs none of them. The file holds
every entry as :meth:`ModelEntry.to_dict` gives it, with the library versions it was written for; it
is used only while those versions are installed. ``python -m backbones.measure.compute`` rewrites it
(after ``counted.json``, whose figures it holds), and a test checks it is current.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from backbones.inference.preprocessing import Preprocessing
from backbones.zoo.entries import ModelEntry, WeightsInfo

#: Where the catalog is kept (package data beside ``backbones.data``).
SNAPSHOT = Path(__file__).resolve().parent.parent / "data" / "catalog.json"


def library_versions() -> dict[str, str | None]:
    """The installed torchvision and timm versions (from their metadata: neither is imported)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("torchvision", "timm"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _preprocessing_from(d: dict) -> Preprocessing:
    known = {f.name for f in fields(Preprocessing)}  # to_dict adds crop_pct, a property
    return Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


def entry_from_dict(d: dict) -> ModelEntry:
    """The inverse of :meth:`ModelEntry.to_dict`."""
    weights = tuple(
        WeightsInfo(**{**w, "input_size": tuple(w["input_size"]), "preprocessing": _preprocessing_from(w["preprocessing"])})
        for w in d["weights"]
    )
    return ModelEntry(
        **{
            **d,
            "input_size": tuple(d["input_size"]),
            "preprocessing": _preprocessing_from(d["preprocessing"]),
            "weights": weights,
            "aliases": tuple(d["aliases"]),
        }
    )


def read_snapshot(path: Path = SNAPSHOT) -> dict[str, ModelEntry] | None:
    """The entries kept in ``path``, or ``None`` when it is missing or was written for other library versions."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if doc.get("versions") != library_versions():
        return None
    return {d["name"]: entry_from_dict(d) for d in doc["entries"]}


def dump_snapshot(entries: dict[str, ModelEntry]) -> str:
    """The text of a snapshot of ``entries`` for the installed library versions."""
    doc = {"versions": library_versions(), "entries": [e.to_dict() for e in entries.values()]}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
