"""Labelled image collections: ImageFolder-style directories and ``path,label`` CSVs.

A dataset is either an ImageFolder-style directory (one sub-folder per class)
or a CSV of ``path,label`` rows, the format the seed notes write for their
animal dataset (``animals/cat/001.jpg,0``, no header)::

    dataset = read_dataset("animals/")                    # or "animal_data.csv"

Unreadable rows and files listed in a CSV that do not exist are recorded in
``Dataset.skipped``, never fatal. Error messages never quote a file's contents.
Zip uploads are unpacked by :mod:`backbones.data.archives`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from backbones.errors import DatasetError
from backbones.inference.images import IMAGE_EXTENSIONS

#: Header names recognised in a CSV's first row.
_PATH_HEADERS = {"path", "paths", "file", "files", "filename", "file_name", "filepath", "file_path", "image",
                 "images", "img", "image_path", "image_name", "image_file", "name", "fname", "location"}
_SPLIT_HEADERS = {"split", "subset", "set", "fold", "partition", "phase"}
_LABEL_HEADERS = {"label", "labels", "class", "classes", "class_name", "classname", "category", "target", "y",
                  "class_id", "label_id", "class_index", "label_index", "species"}

#: Sub-folder names read as a dataset's splits (``train/<class>/…``, ``val/<class>/…``, ``test/<class>/…``).
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
#: The splits, in order.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One labelled image: an absolute ``path``, its ``label`` (a class name or an integer index) and, when
    the dataset comes in ``train/`` ``val/`` ``test/`` folders, its ``split`` (one of :data:`SPLITS`)."""

    path: str
    label: str | int
    split: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A file or CSV row left out of an evaluation, with the reason in one line."""

    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Dataset:
    """A labelled image collection read from a folder or a CSV (see :func:`read_dataset`)."""

    name: str
    path: str
    kind: str  # "folder" | "csv"
    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...] = ()

    @property
    def classes(self) -> tuple[str | int, ...]:
        """The distinct labels, sorted (numerically for integer labels)."""
        return tuple(sorted(set(s.label for s in self.samples), key=lambda x: (isinstance(x, str), x)))

    def counts(self) -> dict[str | int, int]:
        return dict(Counter(s.label for s in self.samples))

    @property
    def has_splits(self) -> bool:
        """True when the dataset came in ``train/`` ``val/`` ``test/`` folders (every sample has a split)."""
        return bool(self.samples) and all(s.split is not None for s in self.samples)

    def split_counts(self) -> dict[str, int]:
        """Images per split (``{}`` without split folders)."""
        counts = Counter(s.split for s in self.samples if s.split is not None)
        return {k: counts[k] for k in SPLITS if counts[k]}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "n": len(self.samples),
            "classes": [str(c) for c in self.classes],
            "counts": {str(k): v for k, v in self.counts().items()},
            "skipped": [s.to_dict() for s in self.skipped],
        }


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")  # .DS_Store, .ipynb_checkpoints, __MACOSX


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _sub_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p.name)), key=lambda p: p.name)


def _split_folders(root: Path, class_dirs: list[Path]) -> dict[str, Path] | None:
    """``{split: folder}`` when every sub-folder is a split name (train/, val/, test/) holding class folders."""
    names = [SPLIT_FOLDERS.get(p.name.lower()) for p in class_dirs]
    if not class_dirs or None in names or len(set(names)) != len(names) or "train" not in names:
        return None
    if not all(_sub_folders(p) for p in class_dirs):  # classes literally named "train" and "test"
        return None
    return dict(zip(names, class_dirs))


def _class_samples(class_dirs: list[Path], split: str | None = None) -> list[Sample]:
    samples: list[Sample] = []
    for class_dir in class_dirs:
        files = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
            files += [Path(dirpath) / f for f in filenames if not _is_hidden(f) and _is_image_name(f)]
        label: str | int = class_dir.name
        samples += [Sample(str(f), label, split) for f in sorted(files)]
    return samples


def _read_folder(root: Path) -> Dataset:
    class_dirs = _sub_folders(root)
    splits = _split_folders(root, class_dirs)
    if splits is None:
        samples = _class_samples(class_dirs)
    else:
        samples = [s for split in SPLITS if split in splits for s in _class_samples(_sub_folders(splits[split]), split)]
    if not samples:
        loose = [p for p in root.iterdir() if p.is_file() and _is_image_name(p.name)]
        if loose:
            raise DatasetError(
                f"{root}: {len(loose)} images but no class sub-folders; put each class's images in "
                "a folder named after the class (e.g. daisy/1.jpg)"
            )
        raise DatasetError(f"{root}: no images found (expected one sub-folder per class with image files)")
    return Dataset(name=root.name or str(root), path=str(root), kind="folder", samples=tuple(samples))


def _parse_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else None


def _norm_header(cell: str) -> str:
    return re.sub(r"[\s\-.]+", "_", cell.strip().lower())


def _detect_header(row: list[str], base: Path) -> tuple[int, int] | None:
    """Column indices ``(path, label)`` when ``row`` is a header row, else None."""
    names = [_norm_header(c) for c in row]
    path_col = next((i for i, n in enumerate(names) if n in _PATH_HEADERS), None)
    label_col = next((i for i, n in enumerate(names) if n in _LABEL_HEADERS and i != path_col), None)
    if path_col is not None or label_col is not None:
        if path_col is None:
            path_col = 0 if label_col != 0 else 1
        if label_col is None:
            label_col = 1 if path_col != 1 else 0
        return path_col, label_col
    # An unnamed header ("file,kind"): no cell is an image file name and the first is not a file.
    if len(row) >= 2 and not any(_is_image_name(c.strip()) for c in row) and _parse_int(row[1]) is None:
        first = row[0].strip()
        if first and not (base / first).is_file():
            return 0, 1
    return None


def _read_csv(path: Path) -> Dataset:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if b"\x00" in raw[:4096]:
        raise DatasetError(f"{path.name}: not a text CSV (binary data)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name}: not UTF-8 text (byte {exc.start})") from exc
    lines = text.splitlines()
    first_line = next((ln for ln in lines if ln.strip()), "")
    if not first_line:
        raise DatasetError(f"{path.name}: empty CSV (expected path,label rows)")
    # Comma unless the first row is clearly tab- or semicolon-separated.
    delimiter = ","
    if "," not in first_line:
        delimiter = "\t" if "\t" in first_line else (";" if ";" in first_line else ",")
    base = path.parent
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if not row or not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
                continue
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: line {reader.line_num}: {exc}") from exc
    columns = (0, 1)
    split_col = None
    if rows:
        header = _detect_header(rows[0][1], base)
        if header is not None:
            columns = header
            # A third column named split/subset holds train/val/test, as split folders would.
            split_col = next((i for i, c in enumerate(rows[0][1]) if _norm_header(c) in _SPLIT_HEADERS
                              and i not in header), None)
            rows = rows[1:]
    if not rows:
        raise DatasetError(f"{path.name}: no path,label rows")
    path_col, label_col = columns
    skipped: list[Skipped] = []
    parsed: list[tuple[Path, str, str | None]] = []
    for line_no, row in rows:
        if len(row) <= max(path_col, label_col):
            skipped.append(Skipped(f"{path.name}:{line_no}", f"line {line_no}: expected path,label, got {len(row)} column(s)"))
            continue
        file_cell, label_cell = row[path_col].strip(), row[label_col].strip()
        if not file_cell or not label_cell:
            skipped.append(Skipped(f"{path.name}:{line_no}", f"line {line_no}: empty {'path' if not file_cell else 'label'}"))
            continue
        number = _parse_int(label_cell)
        if number is not None and number < 0:
            skipped.append(Skipped(f"{path.name}:{line_no}", f"line {line_no}: negative class index"))
            continue
        split = None
        if split_col is not None:
            split = SPLIT_FOLDERS.get(row[split_col].strip().lower()) if split_col < len(row) else None
            if split is None:
                skipped.append(Skipped(f"{path.name}:{line_no}", f"line {line_no}: the split must be train, val or test"))
                continue
        # Seed notes write Windows paths (animals\cat\1.jpg); read them on any system.
        file_path = Path(file_cell.replace("\\", "/")) if os.sep == "/" else Path(file_cell)
        parsed.append((file_path if file_path.is_absolute() else base / file_path, label_cell, split))
    if not parsed:
        first = skipped[0].reason if skipped else "no rows"
        raise DatasetError(f"{path.name}: no valid path,label rows ({first})")
    # Integer labels only when every label is one: "0" among names is a name.
    as_int = all(_parse_int(label) is not None for _, label, _ in parsed)
    samples: list[Sample] = []
    missing: list[Skipped] = []
    for file_path, label, split in parsed:
        value: str | int = _parse_int(label) if as_int else label  # type: ignore[assignment]
        if file_path.is_file():
            samples.append(Sample(str(file_path), value, split))
        else:
            missing.append(Skipped(str(file_path), "no such file"))
    if not samples:
        raise DatasetError(
            f"{path.name}: none of the {len(parsed)} listed files exist (relative paths are resolved "
            "against the CSV's folder)"
        )
    return Dataset(name=path.stem, path=str(path), kind="csv", samples=tuple(samples), skipped=tuple(skipped + missing))


def read_dataset(path: str | os.PathLike, *, name: str | None = None) -> Dataset:
    """Read an ImageFolder-style directory or a ``path,label`` CSV (``.csv``, ``.tsv`` or ``.txt``).

    Folders: one sub-folder per class, image files found by extension at any
    depth, hidden files and folders ignored; a folder whose sub-folders are
    ``train/`` (and ``val/``/``valid/``, ``test/``), each with one sub-folder per
    class, gives samples tagged with their :attr:`Sample.split`. CSV: a header row is optional
    (recognised by names such as ``path``/``file``/``image`` and
    ``label``/``class``; a ``split`` column of train/val/test gives each sample its
    :attr:`Sample.split`); labels are all integers (class indices) or else class
    names; relative paths are resolved against the CSV's folder. Malformed rows
    and missing files are recorded in ``Dataset.skipped``.

    ``name`` replaces the dataset's name (the folder's or CSV's), e.g. an upload's file name.

    Raises :class:`DatasetError` when nothing usable is found.
    """
    p = Path(path).expanduser()
    if p.is_dir() or (p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".txt")):
        ds = _read_folder(p) if p.is_dir() else _read_csv(p)
        return replace(ds, name=name) if name else ds
    if p.is_file():
        if _is_image_name(p.name):
            raise DatasetError(f"{p.name}: a single image, not a dataset (give a folder with one sub-folder per class, or a CSV)")
        raise DatasetError(f"{p.name}: not a dataset (give a folder with one sub-folder per class, or a .csv of path,label rows)")
    raise DatasetError(f"{p}: no such file or directory")


def select_samples(dataset: Dataset, limit: int | None) -> tuple[Sample, ...]:
    """At most ``limit`` samples, taken round-robin across classes so a small limit sees every class."""
    if limit is None or limit >= len(dataset.samples):
        return dataset.samples
    if limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    by_class: dict[str | int, list[Sample]] = {}
    for s in dataset.samples:
        by_class.setdefault(s.label, []).append(s)
    queues = [list(reversed(v)) for v in by_class.values()]
    out: list[Sample] = []
    while len(out) < limit:
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop())
    order = {id(s): i for i, s in enumerate(dataset.samples)}
    return tuple(sorted(out, key=lambda s: order[id(s)]))
