"""Save a trained classifier as the user's own checkpoint: one file every page and command loads by its path.

The checkpoint is a ``.safetensors`` state_dict whose metadata names its architecture, class names,
starting weights and preprocessing, so ``load_model(None, checkpoint=path)`` (and ``predict IMG --checkpoint
PATH``) needs nothing else; a ``classes.json`` beside it serves other tools and the Models page's upload form.
Each save also leaves a small index entry under :func:`backbones.paths.checkpoints_index_dir`, which the
Models page lists as "your own checkpoints" wherever the file itself was written::

    path = save_checkpoint(model, ["daisy", "tulip"], "runs/flowers", arch="resnet50", weights="IMAGENET1K_V2")
    [c.path for c in list_saved_checkpoints()]
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from backbones.errors import CheckpointError
from backbones.inference.preprocessing import Preprocessing
from backbones.paths import checkpoints_index_dir, write_atomically
from backbones.zoo.checkpoints import META_ARCH, META_CLASSES, META_NOTES, META_PREPROCESSING, META_WEIGHTS

#: The checkpoint's file name inside ``out_dir``.
CHECKPOINT_NAME = "model.safetensors"
CLASSES_NAME = "classes.json"


@dataclass(frozen=True)
class SavedCheckpoint:
    """One checkpoint saved on this machine, as its index entry describes it."""

    label: str
    path: str
    arch: str
    classes: tuple[str, ...]
    weights: str | None
    digest: str  # SHA-256 of the file, hex
    saved_at: float  # seconds since the epoch
    meta: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # DDP / DataParallel / torch.compile wrap the model: save the inner one's names.
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module):
        model = inner
    inner = getattr(model, "_orig_mod", None)
    if isinstance(inner, nn.Module):
        model = inner
    # Own, contiguous CPU copies: safetensors refuses tensors that share memory.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _check_fits(state: dict[str, torch.Tensor], arch: str, n: int) -> None:
    """Refuse to write a file the loader would refuse: the state must fit ``arch`` with ``n`` classes."""
    from backbones.zoo.architectures import build_empty, fit_state_dict

    try:
        with warnings.catch_warnings():
            # Loading into meta parameters only checks names and shapes; torch warns that it copies nothing.
            warnings.simplefilter("ignore")
            got = fit_state_dict(build_empty(arch), state, label=f"the {arch} model")
    except CheckpointError as exc:
        raise CheckpointError(f"not saved: {exc}") from exc
    if got != n:
        raise CheckpointError(f"not saved: the model has {got} outputs but {n} class names were given")


def _preprocessing_of(arch: str, meta: dict) -> Preprocessing:
    prep = meta.get("preprocessing")
    if isinstance(prep, Preprocessing):
        return prep
    from backbones.zoo.catalog import get_entry

    return get_entry(arch).preprocessing


def save_checkpoint(
    model: nn.Module,
    classes,
    out_dir: str | os.PathLike,
    *,
    arch: str,
    weights: str | None,
    meta: dict | None = None,
) -> Path:
    """Write ``model``'s state_dict to ``out_dir/model.safetensors`` (and ``classes.json``); the file's path.

    ``arch`` is the catalog name the model was built as (``resnet50``, ``timm:rexnet_100``); ``classes`` the
    names of its outputs in order; ``weights`` the trained weights it started from (None: untrained).
    ``meta`` is stored as JSON notes; its ``preprocessing`` (a :class:`Preprocessing`) is what the model was
    trained with (default: the architecture's) and its ``label`` names it on the Models page (default: the
    folder's name). Written atomically: a failure leaves no half file. Raises :class:`CheckpointError` when
    the state does not fit ``arch`` or the disk refuses the write.
    """
    from safetensors.torch import save_file

    from backbones.zoo.catalog import get_entry

    entry = get_entry(arch)
    names = [str(c) for c in classes]
    if not names:
        raise CheckpointError("not saved: no class names")
    if len(set(names)) != len(names):
        raise CheckpointError("not saved: the class names repeat")
    meta = dict(meta or {})
    prep = _preprocessing_of(entry.name, meta)
    meta.pop("preprocessing", None)
    state = _plain_state(model)
    _check_fits(state, entry.name, len(names))
    out = Path(out_dir)
    label = " ".join(str(meta.get("label") or out.resolve().name).split())[:80]
    header = {
        "format": "pt",
        META_ARCH: entry.name,
        META_CLASSES: json.dumps(names, ensure_ascii=False),
        META_WEIGHTS: weights or "",
        META_PREPROCESSING: json.dumps(prep.to_dict()),
        META_NOTES: json.dumps(meta, ensure_ascii=False, default=str),
    }
    path = out / CHECKPOINT_NAME
    try:
        write_atomically(path, lambda tmp: save_file(state, tmp, metadata=header))
        write_atomically(
            out / CLASSES_NAME, lambda tmp: Path(tmp).write_text(json.dumps(names, ensure_ascii=False, indent=1))
        )
        digest = _sha256(path)
        saved = SavedCheckpoint(
            label=label, path=str(path.resolve()), arch=entry.name, classes=tuple(names), weights=weights,
            digest=digest, saved_at=time.time(), meta=json.loads(header[META_NOTES]),
        )
        _index(saved)
    except OSError as exc:
        raise CheckpointError(f"checkpoint not saved to {out}: {exc.strerror or exc}") from exc
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def _index_file(path: str) -> Path:
    # One entry per checkpoint path: saving to the same folder again replaces its entry.
    return checkpoints_index_dir() / f"{hashlib.sha256(path.encode()).hexdigest()[:20]}.json"


def _index(saved: SavedCheckpoint) -> None:
    data = json.dumps(saved.to_dict(), ensure_ascii=False, indent=1)
    write_atomically(_index_file(saved.path), lambda tmp: Path(tmp).write_text(data, encoding="utf-8"))


def list_saved_checkpoints() -> list[SavedCheckpoint]:
    """Every checkpoint saved on this machine whose file is still there, newest first.

    Entries whose file was moved or deleted are skipped (and their index entry removed); unreadable
    entries are skipped. Labels are made unique by appending the folder's parent when two collide.
    """
    folder = checkpoints_index_dir()
    try:
        files = sorted(folder.glob("*.json"))
    except OSError:
        return []
    out = []
    for f in files:
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
            saved = SavedCheckpoint(
                label=str(d["label"]), path=str(d["path"]), arch=str(d["arch"]),
                classes=tuple(str(c) for c in d["classes"]), weights=d.get("weights"), digest=str(d["digest"]),
                saved_at=float(d["saved_at"]), meta=dict(d.get("meta") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not Path(saved.path).is_file():
            f.unlink(missing_ok=True)
            continue
        out.append(saved)
    out.sort(key=lambda s: -s.saved_at)
    seen: dict[str, int] = {}
    unique = []
    for s in out:
        n = seen.get(s.label, 0)
        seen[s.label] = n + 1
        if n:
            s = SavedCheckpoint(**{**s.__dict__, "label": f"{s.label} ({n + 1})"})
        unique.append(s)
    return unique


def forget_checkpoint(path: str | os.PathLike) -> None:
    """Drop a checkpoint from the Models page's list (the file itself is left where it is)."""
    _index_file(str(Path(path).resolve())).unlink(missing_ok=True)
