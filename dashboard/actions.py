"""What the dashboard writes: uploads stored under server-made names, imports, measurements, evaluations.

Each action calls one library function and clears the caches its write makes stale. Upload limits live here,
one per kind of file; each uploader states its own and enforces it.
"""

from __future__ import annotations

from pathlib import Path

from backbones.errors import BackboneError
from dashboard.caches import (
    catalog_rows,
    comparison,
    guard_memory,
    loaded_model,
    local_runs,
    results_store,
    saved_checkpoints,
    weights_rows,
)
from dashboard.caches import digest as digest_of
from dashboard.state import CUSTOM_PREFIX, device, push_notice, session_gone

# Upload limits, one per kind of file, each stated by its uploader and enforced by it (MiB).
IMAGE_UPLOAD_MB = 50  # = backbones.inference.images.MAX_IMAGE_BYTES by default
LOG_UPLOAD_MB = 50
RESULTS_UPLOAD_MB = 50
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


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




def plan_benchmarks(options: list[str], *, device: str, batch_size: int, budget_s: float, threads: int | None):
    """The :class:`~backbones.measure.plan.SweepPlan` for a Measure click, under this server's caps."""
    from backbones.measure.plan import plan_sweep

    names = [o if not o.startswith(CUSTOM_PREFIX) else loaded_model(o) for o in options]
    plan = plan_sweep(names, device=device, batch_size=batch_size, budget_s=budget_s, threads=threads)
    kept = {id(m) for m in plan.models}
    return plan, [o for o, n in zip(options, names) if id(n) in kept]


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


def dataset_roots() -> tuple[Path, ...]:
    """The server folders a visitor may evaluate (empty: server paths are off)."""
    from backbones.data.roots import data_roots

    return data_roots()


def server_dataset(text: str):
    """A dataset folder or CSV inside BACKBONES_DATA_ROOTS (one generic message for everything else)."""
    from backbones.data.datasets import read_dataset
    from backbones.data.roots import resolve_in_roots

    return read_dataset(resolve_in_roots(text))


def run_evaluation(option: str, dataset, *, batch_size: int = 16, limit: int | None = None, progress=None):
    """Evaluate one model on a :class:`Dataset` and store the result (trained weights only)."""
    from backbones.data.evaluation import evaluate_dataset, save_evaluation

    loaded = loaded_model(option)
    # workers=0: decoding in the server's own thread; worker processes per visitor would multiply memory.
    with guard_memory(device(), f"evaluating {loaded.name}"):
        result = evaluate_dataset(
            loaded, dataset, batch_size=batch_size, limit=limit, progress=progress, should_stop=session_gone(), workers=0
        )
    if loaded.trained:
        try:
            save_evaluation(result, store=results_store())
        except BackboneError as exc:
            push_notice(f"evaluation not saved: {exc}")
    comparison.clear()
    return result


def load_checkpoint_upload(data: bytes, file_name: str, *, arch: str, label: str = "", classes=None):
    """Store an uploaded checkpoint under a server-made name, check it loads, and select it.

    ``classes`` is ``(bytes, file name)`` of a class-name file or None. A checkpoint that is refused leaves
    neither a file in ``uploads/`` nor an entry in the session. Returns the loaded model.
    """
    import tempfile

    from backbones.paths import allowed_suffix, discard_upload, store_upload
    from backbones.zoo.checkpoints import read_class_names
    from dashboard import state

    digest = digest_of(data)
    # The client's file name picks nothing but the suffix: the server names the file by its content.
    path = store_upload(data, file_name, allowed=CHECKPOINT_SUFFIXES)
    name = " ".join((label or Path(file_name.replace("\\", "/")).stem).split())[:80]
    try:
        names = None
        if classes is not None:
            classes_data, classes_name = classes
            suffix = allowed_suffix(classes_name, (".txt", ".json"))
            with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
                tmp.write(classes_data)
                tmp.flush()
                names = tuple(read_class_names(tmp.name, label=Path(classes_name.replace("\\", "/")).name))
        custom = state.CustomModel(label=name, arch=arch, path=str(path), classes=names, digest=digest, num_classes=0)
        state.add_custom(custom)
        try:
            loaded = loaded_model(state.CUSTOM_PREFIX + name)
        except BaseException:
            state.remove_custom(name)
            raise
    except BaseException:
        if not any(c.path == str(path) for c in state.custom_models().values()):
            discard_upload(path)  # a refused checkpoint does not stay on the server
        raise
    state.add_custom(
        state.CustomModel(label=name, arch=arch, path=str(path), classes=names, digest=digest, num_classes=loaded.num_classes)
    )
    state.select(state.CUSTOM_PREFIX + name)
    return loaded


class SessionCancel:
    """A download's Cancel (``is_set()`` like a ``threading.Event``) that is set once this browser session has
    disconnected: Streamlit keeps running a closed tab's script, so its redraws alone would not stop it."""

    def __init__(self) -> None:
        self._gone = session_gone()

    def is_set(self) -> bool:
        return self._gone()


def forget_saved_checkpoint(path: str) -> None:
    """Take a checkpoint saved on this machine off every session's list (its file stays where it is)."""
    from backbones.transfer.export import forget_checkpoint
    from dashboard import state

    forget_checkpoint(path)
    saved_checkpoints.clear()
    for custom in state.custom_models().values():
        if custom.path == path:  # the same file uploaded in this session
            state.remove_custom(custom.label)


def download_weights(names: list[str], *, progress) -> list:
    """Download the default trained weights of ``names``, one after another (progress: done, total, name).

    A click elsewhere (the Cancel button) reruns the page, which interrupts the transfer at its next progress
    update; the download code then removes its partial file, so nothing half-written stays in any cache. Progress
    is also redrawn about four times a second while the server sends nothing or another visitor's download holds
    the lock, so Cancel stops a stalled transfer too and its server thread ends; a closed tab stops it through
    :class:`SessionCancel`.
    """
    from backbones.zoo.fetching import download_weights as fetch

    cancel = SessionCancel()
    results = []
    for name in names:
        results.append(
            fetch(name, progress=lambda done, total, name=name: progress(done, total, name), cancel=cancel)
        )
    weights_rows.clear()
    catalog_rows.clear()
    return results


def run_transfer(dataset, options: list[str], *, probes, batch_size: int = 32, progress=None):
    """Rank ``options`` on ``dataset`` (features cached on disk), store the trained rows, and stop when the tab closes."""
    from backbones.transfer.ranking import rank_backbones

    models = [loaded_model(o) for o in options]
    with guard_memory(device(), "ranking backbones"):
        # workers=0: decoding in the server's own thread; worker processes per visitor would multiply memory.
        report = rank_backbones(dataset, models, probes=probes, device=device(), batch_size=batch_size, workers=0,
                                store=results_store(), progress=progress, should_stop=session_gone())
    comparison.clear()
    return report


def run_finetune(dataset, option: str, *, stage: str, epochs: int, lr: float, progress=None):
    """Fine-tune ``option`` on ``dataset`` with the notes' recipe; the checkpoint lands among the saved ones."""
    from backbones.transfer.finetune import finetune

    loaded = loaded_model(option)
    with guard_memory(device(), f"fine-tuning {loaded.name}"):
        result = finetune(dataset, loaded, stage=stage, epochs=epochs, lr=lr, device=device(), workers=0,
                          progress=progress, should_stop=session_gone())
    _saved_checkpoints_changed()
    return result


def save_probe_checkpoint(row, dataset_name: str) -> str:
    """Save ``row``'s linear probe as a checkpoint (listed with the saved ones on every page); returns its label."""
    from backbones.paths import runs_dir
    from backbones.transfer.ranking import save_probe

    folder = runs_dir() / f"probe-{digest_of(f'{row.features_key}:{dataset_name}'.encode())[:12]}"
    path = save_probe(row, folder, dataset=dataset_name)
    _saved_checkpoints_changed()
    return Path(path).parent.name


def _saved_checkpoints_changed() -> None:
    """A checkpoint (and, for a fine-tune, its run) was written: every picker and Training runs list it now."""
    saved_checkpoints.clear()
    local_runs.clear()


def transfer_pack(report) -> bytes:
    """The Transfer page's slide pack: its charts, the table, the settings and the command that reproduces it."""
    from backbones.transfer.charts import draw_transfer_scatter
    from viz.pack import build_pack, transfer_commands

    x_axes = [("latency_ms", "latency here (ms)"), ("macs", "MACs per image")]
    drawn = {f"{report.dataset}-vs-{x}": draw_transfer_scatter(report, x, "linear", label) for x, label in x_axes}
    return build_pack(
        drawn,
        {"transfer": [r.to_dict() for r in report.rows]},
        {"dataset": report.dataset, "models": [r.model for r in report.rows], "probes": list(report.probes),
         "splits": report.splits},
        transfer_commands(report.dataset, [r.model for r in report.rows], probes=report.probes),
    )
