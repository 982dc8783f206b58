"""Evaluate a model on the user's own labelled images.

A dataset is either an ImageFolder-style directory (one sub-folder per class)
or a CSV of ``path,label`` rows, the format the seed notes write for their
animal dataset (``animals/cat/001.jpg,0``, no header)::

    dataset = read_dataset("animals/")                    # or "animal_data.csv"
    result = evaluate_dataset(load_model("efficientnet_lite0"), dataset, progress=print)
    result.top1, result.top5, result.per_class, result.confusion
    save_evaluation(result)                               # -> the results store (Compare page)

Which model output counts as the right answer for a dataset class:

- An **integer label** (a CSV label such as ``2``, or a folder called ``2``) is an
  index into the model's classes: the checkpoint's own classes, or ImageNet's 1000
  for ImageNet models (``0`` = tench).
- A **class name** is matched against the model's class names, case-insensitively,
  with ``_`` and ``-`` read as spaces: first exactly, then (ImageNet only) against
  WordNet synonyms (``tabby_cat`` -> tabby) and synset ids (``n01440764``), then in
  the singular (``daisies`` -> daisy), then as whole words contained in exactly one
  class name (``uniform`` -> military uniform). ``class_map`` overrides all of this.
- Classes that match nothing are **excluded** from the accuracy and reported in
  ``unmatched`` with their image counts (and, when a name is ambiguous, the candidates).

Accuracy follows the seed notes' definitions: a top-1 error is an image whose most
confident class is not its true class; a top-5 error is one whose true class is not
among the five most confident (with fewer than five classes, top-k uses all of them).

Unreadable images (corrupt, truncated, not an image) and files listed in a CSV
that do not exist are skipped and counted, never fatal.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backbones.errors import CancelledError, DatasetError, ImageError
from backbones.inference.images import IMAGE_EXTENSIONS, load_image
from backbones.inference.logits import logits_of

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]

#: Header names recognised in a CSV's first row.
_PATH_HEADERS = {"path", "paths", "file", "files", "filename", "file_name", "filepath", "file_path", "image",
                 "images", "img", "image_path", "image_name", "image_file", "name", "fname", "location"}
_LABEL_HEADERS = {"label", "labels", "class", "classes", "class_name", "classname", "category", "target", "y",
                  "class_id", "label_id", "class_index", "label_index", "species"}

#: The column of the confusion matrix that counts predictions outside the dataset's classes.
OTHER = "other"


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Sample:
    """One labelled image: an absolute ``path`` and its ``label`` (a class name or an integer index)."""

    path: str
    label: str | int


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


def _read_folder(root: Path) -> Dataset:
    class_dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name)), key=lambda p: p.name
    )
    samples: list[Sample] = []
    for class_dir in class_dirs:
        files = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
            files += [Path(dirpath) / f for f in filenames if not _is_hidden(f) and _is_image_name(f)]
        label: str | int = class_dir.name
        samples += [Sample(str(f), label) for f in sorted(files)]
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
    if rows:
        header = _detect_header(rows[0][1], base)
        if header is not None:
            columns = header
            rows = rows[1:]
    if not rows:
        raise DatasetError(f"{path.name}: no path,label rows")
    path_col, label_col = columns
    skipped: list[Skipped] = []
    parsed: list[tuple[Path, str]] = []
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
            skipped.append(Skipped(f"{path.name}:{line_no}", f"line {line_no}: negative class index {number}"))
            continue
        # Seed notes write Windows paths (animals\cat\1.jpg); read them on any system.
        file_path = Path(file_cell.replace("\\", "/")) if os.sep == "/" else Path(file_cell)
        parsed.append((file_path if file_path.is_absolute() else base / file_path, label_cell))
    if not parsed:
        first = skipped[0].reason if skipped else "no rows"
        raise DatasetError(f"{path.name}: no valid path,label rows ({first})")
    # Integer labels only when every label is one: "0" among names is a name.
    as_int = all(_parse_int(label) is not None for _, label in parsed)
    samples: list[Sample] = []
    missing: list[Skipped] = []
    for file_path, label in parsed:
        value: str | int = _parse_int(label) if as_int else label  # type: ignore[assignment]
        if file_path.is_file():
            samples.append(Sample(str(file_path), value))
        else:
            missing.append(Skipped(str(file_path), "no such file"))
    if not samples:
        raise DatasetError(
            f"{path.name}: none of the {len(parsed)} listed files exist (relative paths are resolved "
            f"against {base}; first: {parsed[0][0]})"
        )
    return Dataset(name=path.stem, path=str(path), kind="csv", samples=tuple(samples), skipped=tuple(skipped + missing))


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Read an ImageFolder-style directory or a ``path,label`` CSV (``.csv``, ``.tsv`` or ``.txt``).

    Folders: one sub-folder per class, image files found by extension at any
    depth, hidden files and folders ignored. CSV: a header row is optional
    (recognised by names such as ``path``/``file``/``image`` and
    ``label``/``class``); labels are all integers (class indices) or else class
    names; relative paths are resolved against the CSV's folder. Malformed rows
    and missing files are recorded in ``Dataset.skipped``.

    Raises :class:`DatasetError` when nothing usable is found.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return _read_folder(p)
    if p.is_file():
        if p.suffix.lower() in (".csv", ".tsv", ".txt"):
            return _read_csv(p)
        if _is_image_name(p.name):
            raise DatasetError(f"{p.name}: a single image, not a dataset (give a folder with one sub-folder per class, or a CSV)")
        raise DatasetError(f"{p.name}: not a dataset (give a folder with one sub-folder per class, or a .csv of path,label rows)")
    raise DatasetError(f"{p}: no such file or directory")


#: Limits on an uploaded dataset archive (uncompressed bytes, members).
MAX_ARCHIVE_BYTES = int(os.environ.get("BACKBONES_MAX_DATASET_BYTES", 4 * 1024**3))
MAX_ARCHIVE_FILES = 200_000


def unpack_dataset(source: bytes | str | os.PathLike, *, dest: str | os.PathLike | None = None) -> Path:
    """Extract a ``.zip`` of class folders (an upload) and return the dataset folder for :func:`read_dataset`.

    Extracts into ``dest`` or ``cache_dir()/datasets/<sha256 of the archive>``, so the
    same upload is unpacked once. Members with absolute paths or ``..``, links,
    ``__MACOSX`` and hidden files are left out; archives over
    :data:`MAX_ARCHIVE_BYTES` uncompressed or :data:`MAX_ARCHIVE_FILES` members are
    refused. When everything sits in one top-level folder, that folder is returned.
    """
    import hashlib
    import shutil
    import stat
    import zipfile

    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else None
    label = "upload.zip" if data is not None else Path(source).name
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if data is not None else Path(source))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{label}: not a zip archive ({exc})") from exc
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ARCHIVE_FILES:
            raise DatasetError(f"{label}: {len(members)} files, more than the {MAX_ARCHIVE_FILES} allowed")
        total = sum(m.file_size for m in members)
        if total > MAX_ARCHIVE_BYTES:
            raise DatasetError(
                f"{label}: {total / 2**30:.1f} GiB uncompressed, over the {MAX_ARCHIVE_BYTES / 2**30:.1f} GiB limit"
            )
        if dest is None:
            from backbones.paths import cache_dir

            digest = hashlib.sha256(data if data is not None else Path(source).read_bytes()).hexdigest()[:16]
            dest = cache_dir() / "datasets" / digest
        dest = Path(dest)
        done_marker = dest / ".complete"
        if not done_marker.exists():
            dest.mkdir(parents=True, exist_ok=True)
            for m in members:
                parts = Path(m.filename.replace("\\", "/")).parts
                is_link = stat.S_ISLNK(m.external_attr >> 16)
                if (m.is_dir() or is_link or not parts or Path(m.filename).is_absolute() or ".." in parts
                        or any(_is_hidden(p) for p in parts)):
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(m) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
                    raise DatasetError(f"{label}: cannot extract {m.filename} ({exc})") from exc
            done_marker.write_text("ok")
    entries = [p for p in dest.iterdir() if not _is_hidden(p.name)]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        # One wrapper folder around the class folders ("flowers/daisy/1.jpg"), not a single class.
        if any(p.is_dir() for p in inner.iterdir() if not _is_hidden(p.name)):
            return inner
    return dest


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


# --------------------------------------------------------------------------- class matching


@dataclass(frozen=True)
class ClassMatch:
    """How one dataset class maps onto model outputs.

    ``indices`` are the model outputs that count as correct (empty: unmatched);
    ``how`` is one of ``index``, ``exact``, ``synonym``, ``wnid``, ``singular``,
    ``contains``, ``map`` or ``unmatched``; ``note`` says why a class did not match.
    """

    label: str
    indices: tuple[int, ...]
    how: str
    model_labels: tuple[str, ...] = ()
    note: str = ""

    @property
    def matched(self) -> bool:
        return bool(self.indices)

    def to_dict(self) -> dict:
        return {"label": self.label, "how": self.how, "indices": list(self.indices),
                "model_labels": list(self.model_labels), "note": self.note}


def normalize_name(name: str) -> str:
    """``"Military_Uniform "`` -> ``"military uniform"``: lower case, ``_``/``-`` as spaces."""
    return " ".join(re.sub(r"[_\-]+", " ", str(name)).lower().split())


def _singular(name: str) -> str:
    words = name.split()
    if not words:
        return name
    w = words[-1]
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    return " ".join(words[:-1] + [w])


@functools.cache
def _imagenet_synonyms() -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """ImageNet-1k synset ids and WordNet lemmas per class (timm ships them), or empty when unavailable."""
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo("imagenet-1k")
        wnids = tuple(info.label_names())
        lemmas = tuple(tuple(normalize_name(x) for x in d.split(",")) for d in info.label_descriptions())
    except Exception:  # an optional refinement: exact names still work without it
        return (), ()
    if len(wnids) != 1000 or len(lemmas) != 1000:
        return (), ()
    return wnids, lemmas


def _is_imagenet(categories: Sequence[str]) -> bool:
    from backbones.zoo.catalog import imagenet_categories

    return tuple(categories) == imagenet_categories()


def _match_one(label: str | int, categories: Sequence[str], normalized: list[str], imagenet: bool) -> ClassMatch:
    display = str(label)
    index = label if isinstance(label, int) else (int(label) if str(label).isdigit() else None)
    names: dict[str, list[int]] = {}
    for i, n in enumerate(normalized):
        names.setdefault(n, []).append(i)
    if isinstance(label, int):
        if 0 <= label < len(categories):
            return ClassMatch(categories[label], (label,), "index", (categories[label],))
        return ClassMatch(display, (), "unmatched", (), f"class index {label} is outside the model's {len(categories)} classes")
    key = normalize_name(label)

    def found(indices: Iterable[int], how: str) -> ClassMatch:
        idx = tuple(sorted(set(indices)))
        return ClassMatch(display, idx, how, tuple(categories[i] for i in idx))

    if key in names:
        return found(names[key], "exact")
    wnids, lemmas = _imagenet_synonyms() if imagenet else ((), ())
    if lemmas:
        hits = [i for i, ls in enumerate(lemmas) if key in ls]
        if hits:
            return found(hits, "synonym")
        if re.fullmatch(r"n\d{8}", key) and key in wnids:
            return found([wnids.index(key)], "wnid")
    single = _singular(key)
    if single != key:
        if single in names:
            return found(names[single], "singular")
        if lemmas:
            hits = [i for i, ls in enumerate(lemmas) if single in ls]
            if hits:
                return found(hits, "singular")
    if index is not None:  # a folder called "2": a class index
        if 0 <= index < len(categories):
            return ClassMatch(categories[index], (index,), "index", (categories[index],))
        return ClassMatch(display, (), "unmatched", (), f"class index {index} is outside the model's {len(categories)} classes")
    # Whole words contained in exactly one class name ("uniform" -> "military uniform").
    candidates = set()
    for word in {key, single}:
        if len(word) < 3:
            continue
        pattern = re.compile(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])")
        candidates |= {i for i, n in enumerate(normalized) if pattern.search(n)}
        if lemmas:
            candidates |= {i for i, ls in enumerate(lemmas) if any(pattern.search(x) for x in ls)}
    if len(candidates) == 1:
        return found(candidates, "contains")
    if candidates:
        shown = ", ".join(sorted(categories[i] for i in candidates)[:6])
        more = f" and {len(candidates) - 6} more" if len(candidates) > 6 else ""
        return ClassMatch(display, (), "unmatched", (),
                          f"ambiguous: {len(candidates)} model classes contain {key!r} ({shown}{more}); use a class map")
    return ClassMatch(display, (), "unmatched", (), "no model class with this name")


def match_classes(
    labels: Sequence[str | int],
    categories: Sequence[str],
    *,
    class_map: Mapping[str, str | int | Sequence[str | int]] | None = None,
) -> dict[str | int, ClassMatch]:
    """Map each dataset label to the model outputs that count as correct for it.

    ``categories`` are the model's class names (``LoadedModel.categories``);
    ImageNet's are recognised and get WordNet synonyms and synset ids. A
    ``class_map`` entry (dataset label -> model class name(s) or index(es))
    takes precedence over the automatic rules described in the module docstring.
    """
    categories = tuple(categories)
    normalized = [normalize_name(c) for c in categories]
    imagenet = _is_imagenet(categories)
    mapped = {str(k): v for k, v in (class_map or {}).items()}
    out: dict[str | int, ClassMatch] = {}
    for label in labels:
        target = mapped.get(str(label))
        if target is None:
            out[label] = _match_one(label, categories, normalized, imagenet)
            continue
        targets = [target] if isinstance(target, (str, int)) else list(target)
        indices: list[int] = []
        for t in targets:
            m = _match_one(t, categories, normalized, imagenet)
            if not m.matched:
                raise DatasetError(f"class map: {label!s} -> {t!s}: {m.note}")
            indices += m.indices
        idx = tuple(sorted(set(indices)))
        display = categories[label] if isinstance(label, int) and 0 <= label < len(categories) else str(label)
        out[label] = ClassMatch(display, idx, "map", tuple(categories[i] for i in idx))
    return out


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Guess:
    """One of an image's top-k classes."""

    index: int
    label: str
    prob: float

    def to_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "prob": self.prob}


@dataclass(frozen=True)
class Misclassified:
    """An image whose top-1 class is wrong: its true label, what was predicted and its top 5."""

    path: str
    label: str
    predicted: str
    top5: tuple[Guess, ...]
    in_top5: bool

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "predicted": self.predicted,
                "in_top5": self.in_top5, "top5": [g.to_dict() for g in self.top5]}


@dataclass(frozen=True)
class Unmatched:
    """A dataset class with no model class: its images are excluded from the accuracy."""

    label: str
    images: int
    note: str

    def to_dict(self) -> dict:
        return {"label": self.label, "images": self.images, "note": self.note}


@dataclass(frozen=True)
class EvaluationResult:
    """Accuracy of one model on one dataset.

    ``top1``/``top5`` are fractions in [0, 1] over the ``n`` scored images (the
    seed notes' top-k error is ``1 - top-k``). ``labels`` are the dataset's
    matched classes; ``confusion[i][j]`` counts images of ``labels[i]`` whose top-1
    class is ``confusion_columns[j]``: the same labels, plus a last ``"other"``
    column when the model can predict classes outside the dataset's (every
    ImageNet model). ``skipped`` counts unreadable or missing files and malformed
    CSV rows; images of unmatched classes are counted in ``excluded``.
    """

    model: str
    dataset: str
    dataset_path: str
    architecture: str
    weights: str
    checkpoint: str | None
    n: int
    skipped: int
    top1: float
    top5: float
    topk: int
    labels: tuple[str, ...]
    per_class: tuple[tuple[str, float], ...]
    per_class_n: tuple[tuple[str, int], ...]
    confusion: tuple[tuple[int, ...], ...]
    confusion_columns: tuple[str, ...]
    matches: tuple[ClassMatch, ...]
    unmatched: tuple[Unmatched, ...]
    excluded: int
    misclassified: tuple[Misclassified, ...]
    skipped_files: tuple[Skipped, ...]
    elapsed_s: float
    images_per_second: float
    notes: tuple[str, ...] = field(default=())

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float:
        return 1.0 - self.top5

    @property
    def metric_label(self) -> str:
        """How Compare names this figure: ``accuracy on <dataset>``."""
        return f"accuracy on {self.dataset}"

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "n": self.n,
            "skipped": self.skipped,
            "top1": self.top1,
            "top5": self.top5,
            "per_class": dict(self.per_class),
            "confusion": [list(r) for r in self.confusion],
            "labels": list(self.labels),
            # extras
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "topk": self.topk,
            "dataset_path": self.dataset_path,
            "architecture": self.architecture,
            "weights": self.weights,
            "checkpoint": self.checkpoint,
            "per_class_n": dict(self.per_class_n),
            "confusion_columns": list(self.confusion_columns),
            "matches": [m.to_dict() for m in self.matches],
            "unmatched": [u.to_dict() for u in self.unmatched],
            "excluded": self.excluded,
            "misclassified": [m.to_dict() for m in self.misclassified],
            "skipped_files": [s.to_dict() for s in self.skipped_files],
            "elapsed_s": self.elapsed_s,
            "images_per_second": self.images_per_second,
            "notes": list(self.notes),
        }

    def to_store_payload(self) -> dict:
        """What :func:`save_evaluation` stores: everything but the per-image lists (kept as counts)."""
        payload = self.to_dict()
        payload.pop("misclassified")
        payload.pop("skipped_files")
        payload["misclassified_count"] = len(self.misclassified)
        payload["metric"] = self.metric_label
        return payload


def evaluate_dataset(
    loaded,
    dataset: Dataset | str | os.PathLike,
    *,
    batch_size: int = 16,
    limit: int | None = None,
    class_map: Mapping[str, str | int | Sequence[str | int]] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> EvaluationResult:
    """Top-1/top-5 accuracy, per-class accuracy and confusion of ``loaded`` on ``dataset``.

    ``loaded`` is a :class:`backbones.models.LoadedModel`; ``dataset`` a
    :class:`Dataset` or a path for :func:`read_dataset`. Images are decoded,
    preprocessed to ``(B, 3, H, W)`` and run ``batch_size`` at a time under the
    model's lock. ``limit`` evaluates at most that many images, spread over the
    classes. ``progress(done, total, message)`` is called after every batch;
    ``should_stop()`` is checked before each batch and raises
    :class:`CancelledError` when it returns true.

    Raises :class:`DatasetError` when no dataset class matches the model's
    classes or no image could be read.
    """
    import torch

    if batch_size < 1:
        raise DatasetError(f"batch size must be at least 1, got {batch_size}")
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    started = time.perf_counter()
    categories = tuple(loaded.categories)
    matches = match_classes(ds.classes, categories, class_map=class_map)
    counts = ds.counts()
    unmatched = tuple(
        Unmatched(m.label, counts[k], m.note) for k, m in matches.items() if not m.matched
    )
    matched_keys = [k for k, m in matches.items() if m.matched]
    if not matched_keys:
        shown = "; ".join(f"{u.label}: {u.note}" for u in unmatched[:3])
        raise DatasetError(f"{ds.name}: none of its {len(unmatched)} classes match the model's classes ({shown})")
    notes: list[str] = []
    if any(isinstance(k, int) for k in matched_keys) and _is_imagenet(categories):
        notes.append("integer labels were read as ImageNet class indices (0 = tench)")

    # Dataset labels may share a display name (an index and a name for one class): keep them apart.
    labels: list[str] = []
    row_of: dict[str | int, int] = {}
    for k in matched_keys:
        name = matches[k].label
        if name in labels:
            name = f"{name} ({k})"
        row_of[k] = len(labels)
        labels.append(name)
    column_of_output: dict[int, int] = {}
    for k in matched_keys:
        for i in matches[k].indices:
            column_of_output.setdefault(i, row_of[k])
    has_other = len(column_of_output) < len(categories)
    columns = labels + ([OTHER] if has_other else [])
    confusion = [[0] * len(columns) for _ in labels]
    correct1 = [0] * len(labels)
    correct5 = [0] * len(labels)
    seen = [0] * len(labels)

    selected = select_samples(ds, limit)
    todo = [s for s in selected if matches[s.label].matched]
    excluded = len(selected) - len(todo)
    total = len(todo)
    k = min(5, len(categories))
    skipped: list[Skipped] = list(ds.skipped)
    misclassified: list[Misclassified] = []
    done = 0
    if progress:
        progress(0, total, f"evaluating {loaded.name} on {ds.name}: {total} images")
    for start in range(0, total, batch_size):
        if should_stop is not None and should_stop():
            raise CancelledError(f"evaluation cancelled after {done} of {total} images")
        batch = todo[start : start + batch_size]
        images, kept = [], []
        for s in batch:
            try:
                images.append(load_image(s.path))
                kept.append(s)
            except ImageError as exc:
                skipped.append(Skipped(s.path, str(exc)))
        if images:
            with loaded.lock, torch.inference_mode():
                x = loaded.preprocessing.batch(images)
                logits = logits_of(loaded.model(x))
                probs = torch.softmax(logits.float(), dim=1)
                values, indices = probs.topk(k, dim=1)
            for s, vals, idxs in zip(kept, values.tolist(), indices.tolist()):
                m = matches[s.label]
                row = row_of[s.label]
                truth = set(m.indices)
                seen[row] += 1
                top1_ok = idxs[0] in truth
                top5_ok = any(i in truth for i in idxs)
                correct1[row] += top1_ok
                correct5[row] += top5_ok
                col = column_of_output.get(idxs[0], len(columns) - 1)
                confusion[row][col] += 1
                if not top1_ok:
                    guesses = tuple(Guess(int(i), categories[i], float(p)) for p, i in zip(vals, idxs))
                    misclassified.append(Misclassified(s.path, labels[row], categories[idxs[0]], guesses, top5_ok))
        done += len(batch)
        if progress:
            n_so_far = sum(seen)
            acc = f", top-1 so far {sum(correct1) / n_so_far:.1%}" if n_so_far else ""
            progress(done, total, f"{done}/{total} images{acc}")
    n = sum(seen)
    if n == 0:
        first = skipped[-1].reason if skipped else "no images"
        raise DatasetError(f"{ds.name}: no image could be read ({first})")
    elapsed = time.perf_counter() - started
    # Classes whose every image was unreadable have no accuracy: drop their rows, keep the columns.
    per_class = tuple((labels[i], correct1[i] / seen[i]) for i in range(len(labels)) if seen[i])
    per_class_n = tuple((labels[i], seen[i]) for i in range(len(labels)) if seen[i])
    return EvaluationResult(
        model=loaded.name,
        dataset=ds.name,
        dataset_path=ds.path,
        architecture=loaded.entry.name,
        weights=loaded.weights,
        checkpoint=loaded.checkpoint,
        n=n,
        skipped=len(skipped),
        top1=sum(correct1) / n,
        top5=sum(correct5) / n,
        topk=k,
        labels=tuple(labels),
        per_class=per_class,
        per_class_n=per_class_n,
        confusion=tuple(tuple(r) for r in confusion),
        confusion_columns=tuple(columns),
        matches=tuple(matches[key] for key in ds.classes),
        unmatched=unmatched,
        excluded=excluded,
        misclassified=tuple(misclassified),
        skipped_files=tuple(skipped),
        elapsed_s=elapsed,
        images_per_second=n / elapsed if elapsed > 0 else float("nan"),
        notes=tuple(notes),
    )


def save_evaluation(result: EvaluationResult, store=None) -> int:
    """Add ``result`` to the results store (``kind="evaluation"``); returns the new record's id.

    ``store`` is a :class:`backbones.store.ResultsStore` (default: the user's store).
    The payload (:meth:`EvaluationResult.to_store_payload`) carries the dataset
    name, so Compare can show "accuracy on <dataset>".
    """
    if store is None:
        from backbones.store import ResultsStore

        store = ResultsStore()
    return store.add("evaluation", result.model, result.to_store_payload(), env=None, source="here")
