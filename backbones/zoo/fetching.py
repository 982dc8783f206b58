"""Trained weights on demand: download them by name, and what a page needs to know before it asks.

``download_weights`` is what ``python -m backbones download`` and the dashboard's download button call::

    result = download_weights("resnet50", progress=ProgressBar("resnet50"))
    result.to_dict()  # {"model", "weights", "status": "downloaded"|"cached"|"bundled", "path", "bytes", "sha256"}

``weights_overview``, ``offline_mode`` and ``default_selection`` are pure look-ups (no network, no model built) for
pages that show which backbones can predict now and which could be downloaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from backbones.errors import BackboneError
from backbones.zoo import downloads
from backbones.zoo.catalog import get_entry
from backbones.zoo.weights import resolve_weights, weights_source, weights_status

#: Statuses whose weights are on this machine (predictions work offline).
HERE = ("bundled", "cached")


@dataclass(frozen=True)
class DownloadResult:
    """One model's weights after :func:`download_weights`: where they are and whether this call fetched them."""

    model: str
    weights: str
    status: str  # "downloaded" | "cached" | "bundled"
    path: str
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def download_weights(
    name: str,
    weights: str = "default",
    *,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Make sure ``name``'s trained ``weights`` are on this machine, downloading them if missing.

    A downloaded file is loaded into the architecture once before it counts (one that does not fit is removed).
    ``progress(done, total)`` is called per chunk; setting ``cancel`` stops the transfer (nothing is left behind).
    Raises :class:`~backbones.errors.WeightsUnavailableError` offline, :class:`~backbones.errors.DownloadError` when
    the download fails, :class:`~backbones.errors.UnknownModelError` for a wrong name.
    """
    entry = get_entry(name)
    info = resolve_weights(entry, weights)
    if info is None:
        raise BackboneError(f"{entry.name}: --weights none has nothing to download")
    source = weights_source(entry)
    found = source.find(entry, info)
    path = found if found is not None else source.fetch(entry, info, progress=progress, cancel=cancel)
    return DownloadResult(
        model=entry.name,
        weights=info.name,
        status=source.found_status if found is not None else "downloaded",
        path=str(path),
        bytes=path.stat().st_size,
        sha256=downloads.sha256_of(path),
    )


@dataclass(frozen=True)
class WeightsRow:
    """A model's default weights at a glance, for pages that offer downloads.

    ``status``: bundled / cached / downloadable / none; ``size_bytes``: the file's size (here) or download size
    (None: unknown), an estimate when ``size_estimated``; ``can_predict``: trained weights are here;
    ``can_download``: missing, and offline mode allows fetching them.
    """

    model: str
    weights: str | None
    status: str
    size_bytes: int | None
    size_estimated: bool
    can_predict: bool
    can_download: bool

    def to_dict(self) -> dict:
        return asdict(self)


def weights_overview(names: Iterable[str]) -> list[WeightsRow]:
    """One :class:`WeightsRow` per catalog name, in order (no network, nothing built)."""
    rows = []
    for name in names:
        entry = get_entry(name)
        default = weights_status(entry.name)[0]  # default weights first; "none" when there are none
        rows.append(
            WeightsRow(
                model=entry.name,
                weights=None if default.status == "none" else default.name,
                status=default.status,
                size_bytes=default.size_bytes,
                size_estimated=default.size_estimated,
                can_predict=default.status in HERE,
                can_download=default.status == "downloadable" and not weights_source(entry).is_offline(),
            )
        )
    return rows


def offline_mode() -> bool:
    """True when no download may happen at all (``BACKBONES_OFFLINE=1``).

    ``HF_HUB_OFFLINE=1`` alone stops timm downloads only: see ``WeightsRow.can_download`` per model.
    """
    return downloads.is_offline()


def default_selection(candidates: Iterable[str]) -> list[str]:
    """The candidates whose default weights are on this machine (bundled or cached), in their order."""
    names = list(candidates)
    return [name for name, row in zip(names, weights_overview(names)) if row.can_predict]
