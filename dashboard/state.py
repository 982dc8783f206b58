"""Every st.cache_* function and every st.session_state key of the dashboard lives here.

Views call these helpers and render what they return; the heavy lifting is in
``backbones`` and ``viz``. Models are shared across sessions through one bounded,
thread-safe LRU cache (``backbones.zoo.cache.ModelCache``); pure results (summaries,
predictions, CAMs) are memoised with ``st.cache_data`` keyed by content digests,
so moving a slider re-renders without recomputing the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from backbones.errors import BackboneError
from backbones.zoo.catalog import CURATED, DEFAULT_MODEL, get_entry, list_models
from backbones.zoo.models import LoadedModel, load_model

# --- session_state keys -------------------------------------------------------------------
SELECTED = "selected_models"  # list[str]: catalog names and "custom:<label>" entries
CUSTOM = "custom_models"  # dict[label, CustomModel]
NOTICES = "notices"  # list[str]: one-line messages to show once (e.g. store rebuilt)
PICKER_VERSION = "picker_version"  # int: bumped when a page changes the selection, so the picker redraws
INITIAL_SELECTION = ("efficientnet_lite0", "resnet50", "mobilenet_v3_large", "timm:rexnet_100")
CUSTOM_PREFIX = "custom:"

# Upload limits, one per kind of file, each stated by its uploader and enforced by it (MiB).
IMAGE_UPLOAD_MB = 50  # = backbones.inference.images.MAX_IMAGE_BYTES by default
LOG_UPLOAD_MB = 50
RESULTS_UPLOAD_MB = 50
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class CustomModel:
    """A user's checkpoint, kept on disk by content digest so reruns and pages can reload it."""

    label: str
    arch: str
    path: str
    classes: tuple[str, ...] | None
    digest: str
    num_classes: int


def init_session() -> None:
    ss = st.session_state
    ss.setdefault(SELECTED, list(INITIAL_SELECTION))
    ss.setdefault(CUSTOM, {})
    ss.setdefault(NOTICES, [])


def selected_models() -> list[str]:
    init_session()
    return list(st.session_state[SELECTED])


def request_selection(options: list[str]) -> None:
    """Change the sidebar selection from a page (the picker widget already exists this run)."""
    st.session_state[SELECTED] = list(options)
    st.session_state[PICKER_VERSION] = st.session_state.get(PICKER_VERSION, 0) + 1


def picker_key() -> str:
    return f"picker_{st.session_state.get(PICKER_VERSION, 0)}"


def custom_models() -> dict[str, CustomModel]:
    init_session()
    return dict(st.session_state[CUSTOM])


def model_options() -> list[str]:
    """Every name the picker offers: curated first, then the catalog, then this session's checkpoints."""
    names = [e.name for e in catalog_entries()]
    return [CUSTOM_PREFIX + label for label in custom_models()] + names


def display_name(option: str) -> str:
    if option.startswith(CUSTOM_PREFIX):
        # Only the label: the picker maps displayed strings back to options, so this must not
        # depend on state that changes between reruns.
        return f"★ {option[len(CUSTOM_PREFIX):]}"
    try:
        entry = get_entry(option)
    except BackboneError:
        return option
    badge = {"bundled": "● ", "timm": "timm · ", "torchvision": ""}[entry.source]
    star = "" if option not in CURATED else ""
    return f"{badge}{entry.display_name}{star}" if entry.display_name != option else f"{badge}{option}"


# --- catalog ---------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def catalog_entries():
    return list_models()


@st.cache_data(show_spinner=False, ttl=30)
def catalog_rows(names: tuple[str, ...] | None = None) -> list[dict]:
    """The ``python -m backbones list --json`` rows (weights status re-read every 30 s)."""
    from backbones.zoo.weights import catalog_rows as rows_for

    entries = catalog_entries() if names is None else [get_entry(n) for n in names]
    return rows_for(entries)


# --- models ---------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def model_cache():
    """One LRU cache of loaded models for the whole server, bounded by count and bytes."""
    from backbones.zoo.cache import ModelCache

    return ModelCache()


def loaded_model(option: str, *, weights: str = "default") -> LoadedModel:
    """The model behind a picker option, from the shared cache (raises BackboneError)."""
    if option.startswith(CUSTOM_PREFIX):
        label = option[len(CUSTOM_PREFIX) :]
        custom = custom_models().get(label)
        if custom is None:
            raise BackboneError(f"checkpoint {label!r} is not loaded in this session any more")
        key = ("checkpoint", custom.arch, custom.digest, custom.classes)
        return model_cache().get_or_load(
            key,
            lambda: load_model(
                custom.arch,
                checkpoint=custom.path,
                classes=list(custom.classes) if custom.classes else None,
                display_name=label,
            ),
        )
    key = ("catalog", option, weights)
    return model_cache().get_or_load(key, lambda: load_model(option, weights=weights))


def model_key(option: str, weights: str = "default") -> str:
    """A hashable, content-based key for st.cache_data functions."""
    if option.startswith(CUSTOM_PREFIX):
        custom = custom_models().get(option[len(CUSTOM_PREFIX) :])
        return f"{option}|{custom.digest if custom else 'missing'}"
    return f"{option}|{weights}"


def trained_weights_available(option: str) -> tuple[bool, str]:
    """Whether predictions/CAMs can run for ``option`` offline, and why not."""
    if option.startswith(CUSTOM_PREFIX):
        return True, ""
    from backbones.zoo.weights import require_weights_file, resolve_weights

    entry = get_entry(option)
    try:
        require_weights_file(entry, resolve_weights(entry, "default"))
    except BackboneError as exc:
        return False, str(exc)
    return True, ""


# --- images ---------------------------------------------------------------------------------
def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@st.cache_resource(show_spinner=False)
def _decoded_images():
    """One cache of decoded photos for the whole server, bounded in bytes ($BACKBONES_IMAGE_CACHE_MB, 256)."""
    import os

    from backbones.inference.images import DecodedImageCache

    try:
        mb = float(os.environ.get("BACKBONES_IMAGE_CACHE_MB", "256"))
    except ValueError:
        mb = 256.0
    return DecodedImageCache(int(max(mb, 1) * 2**20))


def decode_image(data: bytes, name: str):
    """``(PIL image, ImageInfo)`` (a preview at most 2048 px on a side); raises ImageError with a one-line reason."""
    return _decoded_images().get(data, name)


@st.cache_data(show_spinner=False)
def sample_photos() -> dict[str, bytes]:
    from backbones.samples import sample_photos as find

    return {label: Path(path).read_bytes() for label, path in find().items()}


# --- predictions ----------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def predictions(option: str, key: str, image_digest: str, data: bytes, name: str, topk: int = 5) -> list[dict]:
    """Top-k for one image and one model (``key`` and ``image_digest`` make the cache key)."""
    from backbones.inference.predict import predict

    image, _ = decode_image(data, name)
    loaded = loaded_model(option)
    return [t.to_dict() for t in predict(loaded, [image], names=[name], topk=topk)[0].topk]


def push_notice(message: str) -> None:
    init_session()
    st.session_state[NOTICES].append(message)


def pop_notices() -> list[str]:
    init_session()
    out = list(st.session_state[NOTICES])
    st.session_state[NOTICES].clear()
    return out


def default_model() -> str:
    return DEFAULT_MODEL


# --- measurements and the results store -----------------------------------------------------
def available_devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def results_store():
    """The results store, health-checked: a corrupt file is moved aside and rebuilt, with a notice for the user."""
    import warnings

    from backbones.results.store import ResultsStore

    store = ResultsStore()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shown as notices instead
        store.check_health()
    for message in store.notices:
        push_notice(message)
    return store


def _measurable(option: str):
    """A catalog name, or a private copy of the loaded checkpoint (measured under its own name).

    The copy has its own lock: predictions with the shared model do not wait for a measurement.
    """
    if not option.startswith(CUSTOM_PREFIX):
        return option
    import copy
    import dataclasses
    import threading

    loaded = loaded_model(option)
    with loaded.lock:
        module = copy.deepcopy(loaded.model)
    return dataclasses.replace(loaded, model=module, lock=threading.RLock())


def session_gone():
    """A ``should_stop`` for long work: true once this browser session has disconnected (tab closed)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return lambda: False
    instance, session_id = runtime.get_instance(), ctx.session_id
    return lambda: not instance.is_active_session(session_id)


def plan_benchmarks(options: list[str], *, device: str, batch_size: int, budget_s: float, threads: int | None):
    """The :class:`~backbones.measure.plan.SweepPlan` for a Measure click, under this server's caps."""
    from backbones.measure.plan import plan_sweep

    names = [o if not o.startswith(CUSTOM_PREFIX) else loaded_model(o) for o in options]
    plan = plan_sweep(names, device=device, batch_size=batch_size, budget_s=budget_s, threads=threads)
    kept = {id(m) for m in plan.models}
    return plan, [o for o, n in zip(options, names) if id(n) in kept]


def store_name(option: str) -> str:
    return option[len(CUSTOM_PREFIX) :] if option.startswith(CUSTOM_PREFIX) else option


def run_benchmarks(options: list[str], *, progress=None, on_skip=None, **settings) -> list:
    """Measure the options one by one, each stored as soon as it exists; stops if the visitor leaves."""
    from backbones.measure import bench_models
    from backbones.measure.plan import SweepLimits

    store = results_store()
    results = bench_models(
        [_measurable(o) for o in options],
        store=store,
        progress=progress,
        should_stop=session_gone(),
        model_timeout_s=SweepLimits.from_env().model_timeout_s,
        on_skip=on_skip,
        **settings,
    )
    comparison.clear()
    return results


@st.cache_data(show_spinner=False, ttl=5)
def comparison(options: tuple[str, ...], *, device: str, batch_size: int, threads: int | None) -> list[dict]:
    """The Compare table: one read of the store; stored rows it had to skip become a notice."""
    import warnings

    from backbones.results.comparison import comparison_rows

    names = [store_name(o) for o in options]
    labels = {store_name(o): display_name(o) for o in options}
    store = results_store()
    seen = len(store.notices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shown as notices instead
        rows = comparison_rows(names, store=store, device=device, batch_size=batch_size, threads=threads, display_names=labels)
    for message in store.notices[seen:]:
        push_notice(message)
    return [r.to_dict() for r in rows]


def import_results(data: bytes) -> int:
    """Import an uploaded results file; its size is checked before it is written anywhere."""
    import tempfile

    from backbones.results.exchange import check_import_size

    check_import_size(len(data), "results.json")
    with tempfile.TemporaryDirectory() as tmpdir:
        path = Path(tmpdir) / "results.json"  # the name messages show ("results.json: row 17: ...")
        path.write_bytes(data)
        n = results_store().import_json(path)
    comparison.clear()
    return n


def export_results():
    """The export button's data: a callable Streamlit runs only when the button is pressed.

    Deferred so that rendering the page does not read the whole table; it runs outside the
    page's script, so it touches no session state.
    """
    import tempfile

    from backbones.results.store import ResultsStore

    def build() -> bytes:
        with tempfile.TemporaryDirectory() as tmpdir:
            path = Path(tmpdir) / "results.json"
            try:
                ResultsStore().export_json(path)
            except BackboneError:
                return b"[]"
            return path.read_bytes()

    return build


# --- explanations (viz) ---------------------------------------------------------------------
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


@st.cache_data(show_spinner=False, max_entries=128)
def explanation(option: str, key: str, data: bytes, name: str, method: str, layer: str | None, target):
    """One :class:`viz.cam.Explanation` (cached by model, image bytes, method, layer and target)."""
    from viz.cam import explain

    image, _ = decode_image(data, name)
    return explain(loaded_model(option), image, method=method, layer=layer, target=target)


@st.cache_data(show_spinner=False, max_entries=32)
def explanations_topk(option: str, key: str, data: bytes, name: str, method: str, layer: str | None, k: int = 5):
    from viz.cam import explain_topk

    image, _ = decode_image(data, name)
    return explain_topk(loaded_model(option), image, method=method, layer=layer, k=k)


@st.cache_data(show_spinner=False, max_entries=32)
def features(option: str, key: str, data: bytes, name: str, layer: str, top: int = 16):
    from viz.features import feature_maps

    image, _ = decode_image(data, name)
    return feature_maps(loaded_model(option), image, layer, top=top)


# --- summaries, evaluations, training logs ----------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def summary(option: str, key: str, input_size: tuple[int, int, int] | None = None):
    """The :class:`backbones.summary.ModelSummary` of a picker option (untrained catalog model or checkpoint)."""
    from backbones.summary import summarize_model

    if option.startswith(CUSTOM_PREFIX):
        return summarize_model(loaded_model(option), input_size=input_size)
    return summarize_model(option, input_size=input_size)


@st.cache_data(show_spinner=False, max_entries=16)
def training_runs(files: tuple[tuple[str, bytes], ...]) -> tuple[list, list[str]]:
    """``(runs, errors)`` from uploaded logs: each bad file gives one message, the rest still load."""
    from backbones.data.logs import read_log

    runs, errors = [], []
    for name, data in files:
        try:
            runs.extend(read_log(data, filename=name))
        except BackboneError as exc:
            errors.append(str(exc))
    return runs, errors


def seed_logs() -> list[tuple[str, bytes]]:
    """The seed notes' training logs shipped with the tests, for a one-click demo."""
    root = Path(__file__).resolve().parents[1] / "tests" / "data" / "logs"
    return [(p.name, p.read_bytes()) for p in sorted(root.glob("*")) if p.is_file()] if root.is_dir() else []


def dataset_roots() -> tuple[Path, ...]:
    """The server folders a visitor may evaluate (empty: server paths are off)."""
    from backbones.data.roots import data_roots

    return data_roots()


@st.cache_data(show_spinner="Unpacking…", max_entries=8)
def uploaded_dataset(data: bytes, name: str):
    """The dataset inside an uploaded zip, unpacked once by content through the safe unpacker."""
    from backbones.data.archives import unpack_dataset
    from backbones.data.datasets import read_dataset

    label = Path(name.replace("\\", "/")).name or "upload.zip"
    return read_dataset(unpack_dataset(data, label=label), name=Path(label).stem)


def server_dataset(text: str):
    """A dataset folder or CSV inside BACKBONES_DATA_ROOTS (one generic message for everything else)."""
    from backbones.data.datasets import read_dataset
    from backbones.data.roots import resolve_in_roots

    return read_dataset(resolve_in_roots(text))


def run_evaluation(option: str, dataset, *, batch_size: int = 16, limit: int | None = None, progress=None):
    """Evaluate one model on a :class:`Dataset` and store the result (trained weights only)."""
    from backbones.data.evaluation import evaluate_dataset, save_evaluation

    loaded = loaded_model(option)
    result = evaluate_dataset(loaded, dataset, batch_size=batch_size, limit=limit, progress=progress)
    if loaded.trained:
        try:
            save_evaluation(result, store=results_store())
        except BackboneError as exc:
            push_notice(f"evaluation not saved: {exc}")
    comparison.clear()
    return result
