"""Read weights files safely: state_dicts from .pth/.pt/.bin/.safetensors, class-name files.

Pickled checkpoints are read with ``torch.load(weights_only=True)``: a pickle
that would import or call anything beyond tensors and plain containers is
refused before any of it runs.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from backbones.errors import CheckpointError

#: Keys under which training scripts commonly nest the state_dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "ema", "model_ema")
#: Prefixes added by nn.DataParallel / DistributedDataParallel and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")

MAX_CHECKPOINT_BYTES = int(os.environ.get("BACKBONES_MAX_CHECKPOINT_BYTES", 2 * 1024**3))

# A safetensors header is JSON describing every tensor. Parsing it builds Python objects many
# times its size (1.2 million tiny tensors: 40 s and 3.8 GB), so it is measured before it is
# parsed. Real headers are a few MB and describe at most a few thousand tensors.
#: Largest header read (the safetensors library's own limit is 100 MB).
MAX_SAFETENSORS_HEADER_BYTES = 100 * 2**20
#: Most tensors one file may describe.
MAX_SAFETENSORS_TENSORS = 100_000
#: Most JSON values the header may hold: a tensor's entry has about ten (name, dtype, shape, offsets).
MAX_SAFETENSORS_HEADER_VALUES = 16 * MAX_SAFETENSORS_TENSORS
_SCAN_CHUNK_BYTES = 2**20


def _is_state_dict(obj) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _find_state_dict(obj, label: str) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` table inside what a training script saved (under ``WRAPPER_KEYS``)."""
    for _ in range(3):  # {"model": {"state_dict": {...}}} happens
        if _is_state_dict(obj) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        break
    if not _is_state_dict(obj):
        kind = type(obj).__name__
        keys = f" with keys {sorted(map(str, obj))[:6]}" if isinstance(obj, Mapping) else ""
        raise CheckpointError(f"{label}: no state_dict found (a {kind}{keys}); save model.state_dict()")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` and ``_orig_mod.`` prefixes (repeatedly, in any order)."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in STRIP_PREFIXES:
                if key.startswith(p):
                    key = key[len(p) :]
                    changed = True
        out[key] = value
    return out


#: The first bytes of what ``torch.load`` reads as its own formats (a zip archive, a legacy pickle).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether the first bytes are a plausible safetensors prefix: a length that fits the file, then ``{``."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= size - 8


def looks_like_torch(head: bytes) -> bool:
    """Whether ``torch.load`` (given a file, not a ``.safetensors`` path) reads these bytes as zip or pickle."""
    return head.startswith(_TORCH_MAGIC)


def _check_size(path: Path, label: str) -> tuple[int, bytes]:
    if not path.is_file():
        raise CheckpointError(f"{label}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{label}: file is empty (0 bytes)")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{label}: {size / 2**30:.1f} GiB is over the checkpoint size limit")
    with open(path, "rb") as f:
        return size, f.read(16)


def _polyglot(label: str) -> CheckpointError:
    # A file that is safetensors to one reader and a pickle to torch.load is built to be read both
    # ways: whatever it holds for the safe reader, torch.load (torchvision, torch.hub, anyone's
    # script) would run its pickle. No real weights file is both.
    return CheckpointError(
        f"{label}: refused: the file is at once a safetensors file and a PyTorch zip/pickle, a shape "
        "only a crafted file has; nothing in it was executed"
    )


def read_state_dict(path: str | os.PathLike, *, label: str | None = None) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state_dict from a checkpoint file, prefixes stripped.

    Raises :class:`CheckpointError` for missing, truncated, corrupt or hostile
    files (including one that parses both as safetensors and as a pickle); never
    executes code inside them.
    """
    path = Path(path)
    label = label or path.name
    size, head = _check_size(path, label)
    is_safetensors = looks_like_safetensors(head, size)
    if is_safetensors and looks_like_torch(head):
        raise _polyglot(label)
    if path.suffix.lower() == ".safetensors" or is_safetensors:
        return _read_safetensors(path, label)
    return strip_prefixes(_find_state_dict(_load_pickled(path, label, size, head), label))


def read_torch_file(path: str | os.PathLike, *, label: str | None = None) -> dict[str, torch.Tensor]:
    """The state_dict in a file as ``torch.load`` itself would read it, but with ``weights_only=True``.

    For files that other programs open with a plain ``torch.load`` (torch's hub cache, which torchvision
    reads with ``weights_only=False``): the bytes are read through a file handle, so the name's suffix
    cannot switch the format, and a file that also looks like safetensors is refused. What this accepts,
    an unrestricted ``torch.load`` of the same bytes reads the same way: its pickle calls nothing beyond
    the tensor rebuilders the safe unpickler allows. Keys are kept as saved (torchvision remaps old ones).
    """
    path = Path(path)
    label = label or path.name
    size, head = _check_size(path, label)
    if looks_like_safetensors(head, size):
        if looks_like_torch(head):
            raise _polyglot(label)
        raise CheckpointError(
            f"{label}: a safetensors file, but torch's hub cache is read with torch.load; use the official "
            ".pth file (torch.save format), or load your own weights as a checkpoint"
        )
    if not looks_like_torch(head):
        raise CheckpointError(
            f"{label}: not a PyTorch checkpoint (content starts {head[:8]!r}); expected the official .pth file"
        )
    return _find_state_dict(_load_pickled(path, label, size, head), label)


def _load_pickled(path: Path, label: str, size: int, head: bytes):
    """``torch.load(weights_only=True)`` of a zip or legacy pickle, every failure one CheckpointError."""
    if head.startswith(b"PK\x03\x04") and not _has_zip_directory(path, size):
        # torch.save writes a zip whose directory is at the end: a cut file lacks it, and
        # torch's own error for that varies with where the cut is ("Invalid argument", ...).
        raise CheckpointError(
            f"{label}: truncated or incomplete checkpoint (the zip directory at its end is missing); "
            "copy the file again"
        )
    try:
        with warnings.catch_warnings(), open(path, "rb") as f:
            # torch warns about unusual pickle protocols on the way to refusing them; the
            # outcome is reported once, below (the CLI's stderr holds one line). A file handle,
            # not the path: torch.load would read a path ending in .safetensors as safetensors.
            warnings.simplefilter("ignore")
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(label, str(exc)) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError, TypeError) as exc:
        # Only the first sentence: torch appends advice about miniz internals.
        detail = (str(exc).splitlines() or [""])[0].split(". ")[0][:160] or type(exc).__name__
        if any(s in detail for s in ("central directory", "failed finding", "EOF", "truncated", "Ran out")) or isinstance(
            exc, EOFError
        ):
            raise CheckpointError(f"{label}: truncated or incomplete checkpoint ({detail}); copy the file again") from exc
        if not looks_like_torch(head):
            # Neither torch.save's zip nor a pickle: torch's own error (a bare KeyError) says nothing.
            raise CheckpointError(
                f"{label}: not a PyTorch checkpoint (content starts {head[:8]!r}); expected a file "
                "saved with torch.save() or a .safetensors file"
            ) from exc
        raise CheckpointError(f"{label}: not a readable PyTorch checkpoint ({detail})") from exc
    except (AssertionError, AttributeError, struct.error) as exc:
        # torch's legacy (pre-zip) loader trusts the pickle's storage table: damaged files
        # fail inside it with these (found by fuzzing). Still a bad file, not a crash.
        detail = (str(exc).splitlines() or [""])[0][:120]
        raise CheckpointError(f"{label}: corrupt PyTorch checkpoint ({type(exc).__name__}: {detail})") from exc


def _has_zip_directory(path: Path, size: int) -> bool:
    """Whether the file ends with a zip end-of-central-directory record (within its 64 KiB comment)."""
    tail = min(size, 22 + 65535)
    with open(path, "rb") as f:
        f.seek(size - tail)
        return b"PK\x05\x06" in f.read(tail)


def _culprit(detail: str) -> str:
    """``module.name`` of the global torch's safe unpickler refused, or ''."""
    m = re.search(r"GLOBAL ([\w.]+)", detail)
    return m.group(1) if m else ""


def _refusal(label: str, detail: str) -> CheckpointError:
    """The error for a pickle that ``weights_only`` loading refused (nothing in it ran)."""
    culprit = _culprit(detail)
    if culprit and culprit.rsplit(".", 1)[-1][:1].isupper():
        # A class: usually torch.save(model) instead of torch.save(model.state_dict()).
        return CheckpointError(
            f"{label}: refused: the file pickles a whole object ({culprit}), not just tensors; "
            "loading it would import and run code, so nothing in it was executed; re-save it "
            "with torch.save(model.state_dict(), path)"
        )
    if culprit:
        return CheckpointError(
            f"{label}: refused: the pickle asks to run or import code ({culprit}), which a weights "
            "file never needs; nothing in it was executed (save model.state_dict() instead)"
        )
    if "weights_only" in detail or "Unsupported" in detail:
        return CheckpointError(
            f"{label}: refused: a pickle the safe loader cannot read (not written by torch.save?); "
            "nothing in it was executed; save model.state_dict() with torch.save()"
        )
    return CheckpointError(f"{label}: corrupt pickle ({(detail.splitlines() or [''])[0][:120]})")


def _scan_json_structure(f, n: int) -> tuple[int, int]:
    """``(objects, values)`` an upper bound of what parsing the next ``n`` bytes of JSON would build.

    Every object has one ``{``, every value but a container's first follows a ``,``; braces or
    commas inside strings only make the bound looser. Read in chunks: the scan holds one chunk.
    """
    objects = values = 0
    while n > 0:
        chunk = f.read(min(n, _SCAN_CHUNK_BYTES))
        if not chunk:
            break
        n -= len(chunk)
        opened = chunk.count(b"{")
        objects += opened
        values += opened + chunk.count(b"[") + chunk.count(b",")
    return objects, values


def _too_many_tensors(label: str) -> CheckpointError:
    return CheckpointError(
        f"{label}: safetensors header describes more than {MAX_SAFETENSORS_TENSORS:,} tensors; refused unread"
    )


def _read_safetensors_header(path: Path, label: str, size: int) -> tuple[dict, int]:
    """The parsed header and its length, refused before parsing when it is too large to be real."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{label}: truncated safetensors file")
        n = int.from_bytes(raw, "little")
        if n <= 0 or 8 + n > size:
            raise CheckpointError(f"{label}: safetensors header claims {n} bytes but the file has {size}")
        if n > MAX_SAFETENSORS_HEADER_BYTES:
            raise CheckpointError(
                f"{label}: safetensors header of {n:,} bytes is over the {MAX_SAFETENSORS_HEADER_BYTES:,}-byte limit"
            )
        objects, values = _scan_json_structure(f, n)
        # One object for the table, one per tensor, one for __metadata__.
        if objects > MAX_SAFETENSORS_TENSORS + 2:
            raise _too_many_tensors(label)
        if values > MAX_SAFETENSORS_HEADER_VALUES:
            raise CheckpointError(
                f"{label}: safetensors header holds over {MAX_SAFETENSORS_HEADER_VALUES:,} JSON values, "
                "more than any real tensor table; refused unread"
            )
        f.seek(8)
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{label}: safetensors header is not valid JSON") from exc
        except RecursionError as exc:
            raise CheckpointError(f"{label}: safetensors header is nested too deeply to be a tensor table") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{label}: safetensors header is not a table of tensors")
    if len(header) - ("__metadata__" in header) > MAX_SAFETENSORS_TENSORS:
        raise _too_many_tensors(label)
    return header, n


def _is_offset(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_safetensors(path: Path, label: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    # Check the header ourselves first: its size, its length prefix and offsets must fit the file.
    size = path.stat().st_size
    header, n = _read_safetensors_header(path, label, size)
    body = size - 8 - n
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        offsets = meta.get("data_offsets") if isinstance(meta, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(map(_is_offset, offsets))
            and 0 <= offsets[0] <= offsets[1] <= body
        ):
            # Both come from the file: cut them to keep the message one short line.
            raise CheckpointError(
                f"{label}: safetensors header lies about tensor {key[:80]!r} (offsets {str(offsets)[:80]})"
            )
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{label}: corrupt safetensors file ({str(exc).splitlines()[0][:160]})") from exc
    if not state:
        raise CheckpointError(f"{label}: safetensors file holds no tensors")
    return strip_prefixes(state)


def read_class_names(path: str | os.PathLike, *, label: str | None = None) -> list[str]:
    """Class names from ``.txt`` (one per line) or ``.json`` (a list, or ``{index: name}``)."""
    path = Path(path)
    label = label or path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{label}: cannot read class names ({exc})") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CheckpointError(f"{label}: not valid JSON ({exc})") from exc
        if isinstance(data, list):
            names = [str(x) for x in data]
        elif isinstance(data, dict):
            try:
                indexed = {int(k): str(v) for k, v in data.items()}
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"{label}: JSON object keys must be class indices") from exc
            if sorted(indexed) != list(range(len(indexed))):
                raise CheckpointError(f"{label}: class indices must be 0..{len(indexed) - 1} without gaps")
            names = [indexed[i] for i in range(len(indexed))]
        else:
            raise CheckpointError(f"{label}: expected a JSON list or {{index: name}} object")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise CheckpointError(f"{label}: no class names found")
    return names


#: Keys of the safetensors ``__metadata__`` that :func:`backbones.transfer.export.save_checkpoint` writes, so
#: that loading needs only the path: the catalog name, the class names (a JSON list), the weights the training
#: started from, the preprocessing (JSON of :class:`~backbones.inference.preprocessing.Preprocessing`) and free
#: notes (JSON).
META_ARCH = "backbones.arch"
META_CLASSES = "backbones.classes"
META_WEIGHTS = "backbones.weights"
META_PREPROCESSING = "backbones.preprocessing"
META_NOTES = "backbones.meta"


def read_checkpoint_metadata(path: str | os.PathLike, *, label: str | None = None) -> dict[str, str]:
    """The string table a ``.safetensors`` file carries in its header (``{}`` for other formats).

    The header is size-checked before it is parsed, as when the tensors are read.
    """
    path = Path(path)
    label = label or path.name
    if not path.is_file():
        raise CheckpointError(f"{label}: no such file")
    with open(path, "rb") as f:
        head = f.read(9)
    if not (path.suffix.lower() == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{")):
        return {}
    header, _ = _read_safetensors_header(path, label, path.stat().st_size)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict):
        return {}
    return {str(k): v for k, v in meta.items() if isinstance(v, str)}


def metadata_classes(meta: dict[str, str], *, label: str) -> list[str] | None:
    """The class names :data:`META_CLASSES` holds, or None when the file carries none."""
    raw = meta.get(META_CLASSES)
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{label}: the class names in its metadata are not valid JSON") from exc
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{label}: the class names in its metadata are not a list of names")
    return names
