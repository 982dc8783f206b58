"""Every st.cache_* function of the dashboard, and the reads built on them.

Models are shared across sessions through one bounded, thread-safe LRU cache
(``backbones.zoo.cache.ModelCache``); decoded photos through one byte-bounded cache; pure results
(summaries, predictions, CAMs) are memoised with ``st.cache_data`` keyed by content digests, so moving a
slider re-renders without recomputing the model. Each function calls one library function.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from backbones.errors import BackboneError
from backbones.zoo.catalog import get_entry, list_models
from dashboard.state import CUSTOM_PREFIX, CustomModel, device, display_name, push_notice, store_name
from dashboard.state import custom_models as session_custom_models

# Nothing on a page's first paint (catalog, published figures, weights status, the results store) needs
# torch, timm or captum; each function below imports what it runs, so the first paint does not wait for them.
if TYPE_CHECKING:
    from backbones.zoo.models import LoadedModel


@st.cache_resource(show_spinner=False)
def catalog_entries():
    return list_models()


@st.cache_data(show_spinner=False, ttl=30)
def catalog_rows(names: tuple[str, ...] | None = None) -> list[dict]:
    """The ``python -m backbones list --json`` rows (weights status re-read every 30 s)."""
    from backbones.zoo.listing import catalog_rows as rows_for

    entries = catalog_entries() if names is None else [get_entry(n) for n in names]
    return rows_for(entries)


def model_options() -> list[str]:
    """Every name the picker offers: curated first, then the catalog, then this session's checkpoints."""
    names = [e.name for e in catalog_entries()]
    return [CUSTOM_PREFIX + label for label in custom_models()] + names


@st.cache_resource(show_spinner=False)
def model_cache():
    """One LRU cache of loaded models for the whole server, bounded by count and bytes."""
    from backbones.zoo.cache import ModelCache

    return ModelCache()


def loaded_model(option: str, *, weights: str = "default") -> LoadedModel:
    """The model behind a picker option on this session's device, from the shared cache (raises BackboneError).

    The cache is keyed by device and bounded by bytes wherever the weights live; a CUDA out-of-memory while
    loading empties it and becomes a one-line error (see :func:`guard_memory`).
    """
    from backbones.zoo.models import load_model

    dev = device()
    if option.startswith(CUSTOM_PREFIX):
        label = option[len(CUSTOM_PREFIX) :]
        custom = custom_models().get(label)
        if custom is None:
            raise BackboneError(f"checkpoint {label!r} is not loaded in this session any more")
        key = ("checkpoint", custom.arch, custom.digest, custom.classes, dev)
        load = lambda: load_model(  # noqa: E731
            custom.arch,
            checkpoint=custom.path,
            classes=list(custom.classes) if custom.classes else None,
            display_name=label,
            device=dev,
        )
    else:
        key = ("catalog", option, weights, dev)
        # Pages never download behind a spinner: missing weights get a Download button with progress.
        load = lambda: load_model(option, weights=weights, device=dev, download=False)  # noqa: E731
    with guard_memory(dev, f"loading {display_name(option)}"):
        return model_cache().get_or_load(key, load)


@contextlib.contextmanager
def guard_memory(dev: str, what: str):
    """Turn a CUDA out-of-memory into a one-line error, after emptying the model cache to make room."""
    try:
        yield
    except Exception as exc:
        from backbones.inference.device import describe_out_of_memory, free_device_memory, is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        model_cache().clear()
        free_device_memory(dev)
        raise BackboneError(describe_out_of_memory(dev, what=what)) from exc


def model_key(option: str, weights: str = "default") -> str:
    """A hashable, content-based key for st.cache_data functions (the device is part of it)."""
    if option.startswith(CUSTOM_PREFIX):
        custom = custom_models().get(option[len(CUSTOM_PREFIX) :])
        return f"{option}|{custom.digest if custom else 'missing'}|{device()}"
    return f"{option}|{weights}|{device()}"


@st.cache_data(show_spinner=False, ttl=10)
def devices() -> list[dict]:
    """Every device PyTorch sees, with its name and free memory (re-read every 10 s)."""
    from backbones.inference.device import list_devices

    return [d.to_dict() for d in list_devices()]


@st.cache_data(show_spinner=False, ttl=5)
def weights_rows(options: tuple[str, ...]) -> dict[str, dict]:
    """Per selected catalog option, its default weights at a glance (status, size, can predict / download)."""
    from backbones.zoo.fetching import weights_overview

    names = [o for o in options if not o.startswith(CUSTOM_PREFIX)]
    return {row.model: row.to_dict() for row in weights_overview(names)}


def can_predict(option: str, rows: dict[str, dict]) -> bool:
    """Trained weights are here (a checkpoint always has them); ``rows`` from :func:`weights_rows`."""
    return option.startswith(CUSTOM_PREFIX) or rows[option]["can_predict"]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@st.cache_resource(show_spinner=False)
def _decoded_images():
    """One cache of decoded photos for the whole server, bounded in bytes ($BACKBONES_IMAGE_CACHE_MB, 256)."""
    from backbones.inference.images import DecodedImageCache
    from backbones.settings import env_number

    return DecodedImageCache(int(env_number("BACKBONES_IMAGE_CACHE_MB", 256) * 2**20))


def decode_image(data: bytes, name: str):
    """``(PIL image, ImageInfo)`` (a preview at most 2048 px on a side); raises ImageError with a one-line reason."""
    return _decoded_images().get(data, name)


@st.cache_data(show_spinner=False)
def sample_photos() -> dict[str, bytes]:
    from backbones.samples import sample_photos as find

    return {label: Path(path).read_bytes() for label, path in find().items()}


@st.cache_data(show_spinner=False, max_entries=256)
@st.cache_data(show_spinner=False, max_entries=256)
def _top_classes(option: str, key: str, image_digest: str, data: bytes, name: str) -> list[dict]:
    """The top :data:`MAX_TOPK` classes for one image and one model (``key`` and ``image_digest`` key the cache)."""
    from backbones.inference.predict import predict

    image, _ = decode_image(data, name)
    loaded = loaded_model(option)
    with guard_memory(device(), f"predictions of {display_name(option)}"):
        return [t.to_dict() for t in predict(loaded, [image], names=[name], topk=MAX_TOPK)[0].topk]


#: The most classes a page shows; one forward pass serves every smaller top-k.
MAX_TOPK = 10


def predictions(option: str, key: str, image_digest: str, data: bytes, name: str, topk: int = 5) -> list[dict]:
    """Top-k for one image and one model; changing k re-slices the cached top 10, it never reruns the model."""
    return _top_classes(option, key, image_digest, data, name)[:topk]


def available_devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@st.cache_resource(show_spinner=False, max_entries=4)
def _store_for(url: str):
    """One store (one database connection) per process and database."""
    from backbones.results.store import ResultsStore

    return ResultsStore(url)


def results_store():
    """The results store, health-checked: a corrupt file is moved aside and rebuilt, with a notice for the user.

    ``$BACKBONES_RESULTS_DB`` may name a PostgreSQL server shared by a lab; one that is down or refuses the
    password is a one-line StoreError naming host and database, never the password.
    """
    import warnings

    from backbones.results.store import default_url

    store = _store_for(default_url())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shown as notices instead
        store.check_health()
    drain_notices(store)
    return store


def drain_notices(store) -> None:
    """Hand the store's new notices (rows skipped, file rebuilt) to this session, once."""
    while store.notices:
        push_notice(store.notices.pop(0))


@st.cache_data(show_spinner=False, ttl=5)
def comparison(options: tuple[str, ...], *, device: str, batch_size: int, threads: int | None) -> list[dict]:
    """The Compare table: one read of the store; stored rows it had to skip become a notice."""
    import warnings

    from backbones.results.comparison import comparison_rows

    names = [store_name(o) for o in options]
    labels = {store_name(o): display_name(o) for o in options}
    store = results_store()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shown as notices instead
        rows = comparison_rows(names, store=store, device=device, batch_size=batch_size, threads=threads, display_names=labels)
    drain_notices(store)
    return [r.to_dict() for r in rows]


@st.cache_data(show_spinner=False, max_entries=64)
def cam_layers(option: str, key: str) -> tuple[list[str], str | None, str | None]:
    """``(spatial layer names, default layer, why there is none)`` for a model's layer picker."""
    from viz.layers import default_layer, spatial_layers

    loaded = loaded_model(option)
    names = [i.name for i in spatial_layers(loaded)]
    try:
        return names, default_layer(loaded), None
    except BackboneError as exc:
        return names, None, str(exc)


@st.cache_data(show_spinner=False, max_entries=64)
def layer_layouts(option: str, key: str) -> tuple[dict[str, str], dict[str, str]]:
    """``({layer: how it is laid out}, {layer: why it is not offered})`` for a transformer's layer picker
    (CNN maps need no words: they are left out of the first)."""
    from viz.layers import describe_layers

    infos = describe_layers(loaded_model(option))
    laid_out = {i.name: i.layout.describe() for i in infos if i.spatial and i.layout.kind != "NCHW"}
    return laid_out, {i.name: i.note for i in infos if i.note}


@st.cache_data(show_spinner=False, max_entries=64)
def refused_methods(option: str, key: str) -> dict[str, str]:
    """``{method: why}`` for the methods that cannot explain this model (guided ones on GELU, rollout on a CNN)."""
    from viz.methods.registry import refused_methods as refusals

    return refusals(loaded_model(option).model)


@st.cache_data(show_spinner=False, max_entries=128)
def explanation(option: str, key: str, data: bytes, name: str, method: str, layer: str | None, target):
    """One :class:`viz.cam.Explanation` (cached by model, image bytes, method, layer and target)."""
    from viz.cam import explain

    image, _ = decode_image(data, name)
    loaded = loaded_model(option)
    with guard_memory(device(), f"{method} on {display_name(option)}"):
        return explain(loaded, image, method=method, layer=layer, target=target)


@st.cache_data(show_spinner=False, max_entries=32)
def explanations_topk(option: str, key: str, data: bytes, name: str, method: str, layer: str | None, k: int = 5):
    from viz.cam import explain_topk

    image, _ = decode_image(data, name)
    loaded = loaded_model(option)
    with guard_memory(device(), f"{method} for the top {k} on {display_name(option)}"):
        return explain_topk(loaded, image, method=method, layer=layer, k=k)


@st.cache_data(show_spinner=False, max_entries=32)
def features(option: str, key: str, data: bytes, name: str, layer: str, top: int = 16):
    from viz.features import feature_maps

    image, _ = decode_image(data, name)
    loaded = loaded_model(option)
    with guard_memory(device(), f"feature maps of {display_name(option)}"):
        return feature_maps(loaded, image, layer, top=top)


@st.cache_data(show_spinner=False, max_entries=32)
def summary(option: str, key: str, input_size: tuple[int, int, int] | None = None):
    """The :class:`backbones.summary.ModelSummary` of a picker option (untrained catalog model or checkpoint)."""
    from backbones.summary import summarize_model

    if option.startswith(CUSTOM_PREFIX):
        return summarize_model(loaded_model(option), input_size=input_size)
    return summarize_model(option, input_size=input_size)


@st.cache_data(show_spinner=False, max_entries=16)
def erf(option: str, key: str, trained: bool, images: int):
    """Effective receptive fields of a model's stages (:func:`backbones.summary.erf.measure_erf`): with the loaded
    trained weights, or an untrained build of the architecture (a checkpoint is always trained)."""
    from backbones.summary.erf import measure_erf

    if trained or option.startswith(CUSTOM_PREFIX):
        return measure_erf(loaded_model(option), images=images)
    return measure_erf(option, weights="none", images=images)


#: Most runs the Training page lays out (each has a name field): several capped logs together.
TRAINING_MAX_RUNS = 100
#: Most epochs one cached read keeps (every run of every file): bounds each cache entry's memory.
TRAINING_MAX_EPOCHS = 100_000


def training_runs(files: tuple[tuple[str, bytes], ...]) -> tuple[list, list[str], list[str]]:
    """``(runs, errors, notices)`` from uploaded logs: each bad file gives one error, the rest still load.

    Cached by the files' names and content digests (the bytes are not hashed again on every rerun,
    nor kept): at most 4 results, each at most :data:`TRAINING_MAX_RUNS` runs and
    :data:`TRAINING_MAX_EPOCHS` epochs.
    """
    return _training_runs(tuple((name, digest(data)) for name, data in files), files)


@st.cache_data(show_spinner=False, max_entries=4, ttl=3600)
def _training_runs(key: tuple[tuple[str, str], ...], _files: tuple[tuple[str, bytes], ...]):  # noqa: ARG001 - the cache key
    from backbones.data.logs import read_log

    runs, errors, notices = [], [], []
    epochs = 0
    for name, data in _files:
        try:
            found = read_log(data, filename=name, notices=notices)
        except BackboneError as exc:
            errors.append(str(exc))
            continue
        count = sum(len(r.epochs) for r in found)
        if epochs + count > TRAINING_MAX_EPOCHS:
            errors.append(f"{Path(name).name}: {count:,} epochs; this page keeps at most {TRAINING_MAX_EPOCHS:,} "
                          "in all (read it with python -m backbones logs)")
            continue
        epochs += count
        runs.extend(found)
    if len(runs) > TRAINING_MAX_RUNS:
        notices.append(f"{len(runs)} runs uploaded; the first {TRAINING_MAX_RUNS} are shown "
                       f"({len(runs) - TRAINING_MAX_RUNS} dropped)")
        runs = runs[:TRAINING_MAX_RUNS]
    return runs, errors, notices


@st.cache_data(show_spinner=False)
def demo_runs() -> list:
    """The demo training runs shipped with the library, named for a user ("demo · VGG19")."""
    from backbones.data.logs import demo_runs as read

    return read()


def local_runs() -> tuple[list, list[str]]:
    """``(runs, problems)`` of this machine's fine-tunes (re-read every 10 s, so a running one grows)."""
    from backbones.paths import runs_dir

    return local_runs_in(str(runs_dir()))


@st.cache_data(show_spinner=False, ttl=10)
def local_runs_in(root: str) -> tuple[list, list[str]]:
    """:func:`local_runs` of the runs folder ``root`` (the cache is keyed by it)."""
    from backbones.data.logs import local_runs as read

    return read(root)


local_runs.clear = local_runs_in.clear  # after a fine-tune: the Training runs page lists it at once


def saved_checkpoints() -> list:
    """The checkpoints saved on this machine (fine-tunes, saved probes), newest first, re-read every 10 s."""
    from backbones.paths import checkpoints_index_dir

    return saved_checkpoints_in(str(checkpoints_index_dir()))


@st.cache_data(show_spinner=False, ttl=10)
def saved_checkpoints_in(index: str) -> list:
    # Keyed by the index folder: a server (or a test) that changes its cache folder reads the new one.
    from backbones.transfer.export import list_saved_checkpoints

    return list_saved_checkpoints()


saved_checkpoints.clear = saved_checkpoints_in.clear  # after a save: every picker offers the new checkpoint


def custom_models() -> dict[str, CustomModel]:
    """Every checkpoint the picker offers: those saved on this machine (fine-tunes, saved probes) and this
    session's uploads (an upload under the same name wins in its session)."""
    out = {
        c.label: CustomModel(label=c.label, arch=c.arch, path=c.path, classes=c.classes, digest=c.digest,
                             num_classes=c.num_classes, saved=True)
        for c in saved_checkpoints()
    }
    out.update(session_custom_models())
    return out


@st.cache_data(show_spinner="Unpacking…", max_entries=8)
def uploaded_dataset(data: bytes, name: str):
    """The dataset inside an uploaded zip, unpacked once by content through the safe unpacker."""
    from backbones.data.archives import unpack_dataset
    from backbones.data.datasets import read_dataset

    label = Path(name.replace("\\", "/")).name or "upload.zip"
    return read_dataset(unpack_dataset(data, label=label), name=Path(label).stem)


@st.cache_data(show_spinner=False, max_entries=8)
def colour_scale(left: str, right: str, width: int = 900):
    """The heatmap colour scale as an image (drawn once per label pair)."""
    from viz.overlay import colour_bar

    return colour_bar(width, left_label=left, right_label=right, caption="heatmap colour scale")


@st.cache_data(show_spinner="Preparing the built-in sample…")
def sample_dataset():
    """The built-in labelled sample (real photos from installed packages, 3 classes × 5) as a Dataset."""
    from backbones.data.datasets import read_dataset
    from backbones.data.sample import sample_dataset as build

    return read_dataset(build(), name="built-in sample")


@st.cache_data(show_spinner="Evaluating on the built-in sample…", max_entries=16)
def sample_evaluation(option: str, key: str):
    """``option`` scored on the built-in sample (not stored: the sample is a demonstration, not a benchmark)."""
    from backbones.data.evaluation import evaluate_dataset

    loaded = loaded_model(option)
    with guard_memory(device(), f"evaluating {display_name(option)}"):
        return evaluate_dataset(loaded, sample_dataset(), workers=0)


def offline() -> bool:
    """BACKBONES_OFFLINE=1: nothing is downloaded; the sidebar says so."""
    from backbones.zoo.fetching import offline_mode

    return offline_mode()


@st.cache_data(show_spinner=False, max_entries=64)
def faithfulness(option: str, key: str, data: bytes, name: str, method: str, layer: str | None, target):
    """Deletion / insertion scores of the page's map, with a smooth random map's for reference (32 steps)."""
    from viz.quality import score_explanations

    image, _ = decode_image(data, name)
    exp = explanation(option, key, data, name, method, layer, target)
    loaded = loaded_model(option)
    with guard_memory(device(), f"faithfulness of {method} on {display_name(option)}"):
        # Batches of 8 masked images: the same work on a CPU, a quarter of the activation memory per session.
        return score_explanations(loaded, image, [exp], batch_size=8)[0]


@st.cache_data(show_spinner=False, max_entries=16)
def faithfulness_ranking(options: tuple[str, ...], keys: tuple[str, ...], data: bytes, name: str) -> list[dict]:
    """Every method on every backbone for this image (top-1 class), ranked by insertion minus deletion AUC.

    Through the server's fair work queue, one (backbone, method) at a time; stops when the visitor leaves.
    """
    from dashboard.state import session_gone
    from viz.quality import rank_methods

    image, _ = decode_image(data, name)
    rows = []
    for option in options:
        loaded = loaded_model(option)
        with guard_memory(device(), f"ranking methods on {display_name(option)}"):
            for f in rank_methods([loaded], image, batch_size=8, should_stop=session_gone()):
                rows.append({
                    "backbone": display_name(option), "method": f.method, "layer": f.layer or "—",
                    "deletion AUC ↓": f.score.deletion_auc, "insertion AUC ↑": f.score.insertion_auc,
                    "random deletion": f.random.deletion_auc, "random insertion": f.random.insertion_auc,
                    "insertion − deletion": f.score.insertion_auc - f.score.deletion_auc,
                })
    return sorted(rows, key=lambda r: -r["insertion − deletion"])


@st.cache_data(show_spinner=False, max_entries=16)
def sanity(option: str, key: str, data: bytes, name: str, method: str, layer: str | None, target):
    """The cascading-randomisation check of the page's map, on a private copy of the model (through the fair work
    queue, step by step; stops when the visitor leaves)."""
    from dashboard.state import session_gone
    from viz.quality import run_sanity_check

    image, _ = decode_image(data, name)
    loaded = loaded_model(option)
    with guard_memory(device(), f"the sanity check on {display_name(option)}"):
        return run_sanity_check(loaded, image, method=method, layer=layer, target=target, should_stop=session_gone())


@st.cache_data(show_spinner=False, max_entries=16, hash_funcs={"viz.cam.Explanation": lambda e: (e.model, e.method, e.layer, e.target.index, e.crop_box)})
def explanation_grid(data: bytes, name: str, explanations: tuple, normalize: str, alpha: float, titles: tuple):
    """Several maps of one photo side by side (drawn once per set of maps, not on every rerun)."""
    from viz.overlay import render_grid

    image, _ = decode_image(data, name)
    return render_grid(image, list(explanations), normalize=normalize, alpha=alpha, titles=list(titles), show_image=True)


@st.cache_data(show_spinner=False, max_entries=32)
def feature_grid(option: str, key: str, data: bytes, name: str, layer: str, top: int = 16):
    """The feature-map grid image of :func:`features` (drawn once)."""
    from viz.features import render_feature_grid

    return render_feature_grid(features(option, key, data, name, layer, top))


@st.cache_data(show_spinner="Preparing the built-in transfer sample…")
def transfer_sample():
    """The built-in labelled sample for Transfer: real photos from installed packages, classes that are not ImageNet's."""
    from backbones.data.datasets import read_dataset
    from backbones.data.sample import transfer_sample_dataset

    return read_dataset(transfer_sample_dataset(), name="sample-transfer")  # the CLI's name for it


@st.cache_data(show_spinner="Ranking the backbones on the built-in sample…", max_entries=16)
def sample_transfer(options: tuple[str, ...], keys: tuple[str, ...]):
    """``options`` ranked on the built-in transfer sample (not stored: a demonstration, not a benchmark)."""
    from backbones.transfer.ranking import rank_backbones

    models = [loaded_model(o) for o in options]
    with guard_memory(device(), "ranking on the built-in sample"):
        return rank_backbones(transfer_sample(), models, device=device(), workers=0, save=False)
