"""Shared widgets and renderers: the sidebar backbone picker, error boxes, image inputs, charts."""

from __future__ import annotations

import html
import re

import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError
from dashboard import actions, caches, state
from dashboard.i18n import LANGUAGES, language, t

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def render_sidebar():
    """Language, the backbone picker every page shares, what each backbone can do here, and a slot for the device.

    The device picker needs torch (to list GPUs), which the first paint does not: the caller fills the
    returned slot with :func:`render_device_picker` after the page has been drawn.
    """
    options = caches.model_options()
    current = state.keep_existing(options)  # a removed checkpoint leaves the selection
    with st.sidebar:
        lang_key = "lang_toggle"
        st.segmented_control(
            "Language / 语言", list(LANGUAGES), format_func=LANGUAGES.get, key=lang_key, default=language(),
            on_change=state.store_language, args=(lang_key,), label_visibility="collapsed",
        )
        st.markdown(f"### {t('sidebar.backbones')}")
        # The canonical selection lives in the session state; the widget (whose identity changes with its
        # options, e.g. when a checkpoint is added) starts from it and writes back.
        key = state.picker_key()
        state.sync_picker(key, current)
        st.multiselect(
            t("sidebar.picker"),
            options,
            key=key,
            on_change=state.store_picker,
            args=(key,),
            format_func=state.display_name,
            help=t("sidebar.picker_help", n=len(options)),
            placeholder=t("sidebar.picker_placeholder"),
        )
        selected = state.selected_models()
        rows = caches.weights_rows(tuple(selected))
        for option in selected:
            st.caption(f"**{md(state.display_name(option))}** · {weights_badge(option, rows.get(option))}")
        if caches.offline():
            here = sum(1 for o in selected if caches.can_predict(o, rows))
            st.info(t("sidebar.offline", here=here, total=len(selected)), icon=":material/cloud_off:")
        device_slot = st.container()
        for message in state.pop_notices():
            from backbones.redaction import redact_paths

            st.warning(md(redact_paths(message)))
        st.divider()
        st.caption(t("sidebar.footer"))
    return device_slot


def send_before_torch() -> None:
    """Let the server send what the page has drawn so far before this run first imports torch.

    Importing torch holds the interpreter for seconds, and Streamlit's event loop, which sends the page
    to the browser, waits meanwhile: on a fresh server the table drawn before it would reach the browser
    only after the import. A moment's pause, once per server process, lets it go out first.
    """
    import sys
    import time

    if "torch" not in sys.modules:
        time.sleep(0.5)


def render_device_picker(slot) -> None:
    """The sidebar's device picker, drawn into ``slot`` (from :func:`render_sidebar`)."""
    send_before_torch()
    with slot:
        devices = caches.devices()
        device_options = [d["name"] for d in devices]
        # Option labels must not change between reruns: Streamlit matches the browser's choice by its label, and
        # one that no longer matches (free memory moved) became the session's device as text.
        labels = {d["name"]: f"{d['name']} ({d['description']})" for d in devices}
        device_key = "device_picker"
        state.sync_device_picker(device_key, device_options)
        chosen = st.selectbox(
            t("sidebar.device"), device_options, key=device_key, format_func=labels.get,
            on_change=state.store_device, args=(device_key, device_options), help=t("sidebar.device_help"),
        )
        current = next((d for d in devices if d["name"] == chosen), None)
        if current is not None and current["label"] != labels[chosen]:
            st.caption(current["label"])


def weights_badge(option: str, row: dict | None) -> str:
    """One badge that says what the user can do with a backbone here: ready / download NN MB / untrained only."""
    if option.startswith(state.CUSTOM_PREFIX):
        custom = caches.custom_models().get(option[len(state.CUSTOM_PREFIX) :])
        return t("badge.checkpoint", arch=custom.arch, n=custom.num_classes) if custom else ""
    if row is None or row["status"] == "none":
        return t("badge.untrained")
    if row["can_predict"]:
        return t("badge.ready")
    if row["can_download"]:
        return t("badge.download", size=format_size(row["size_bytes"], row["size_estimated"]))
    return t("badge.offline")


# Links and images need [ ], autolinks and HTML < >; * ~ ` $ | would turn names into emphasis, code, maths or
# tables. Dots, dashes and underscores inside names are left alone (GFM does not emphasise inside words).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>$~|])")


def md(text) -> str:
    """``text`` as literal Markdown: names from users (files, checkpoints, runs, classes) render as plain text.

    Without this, ``![](https://host/x)`` in a file name makes every viewer's browser fetch that URL.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def plain_label(text) -> str:
    """``text`` for Plotly, which renders a subset of HTML (``<a href>``) in names, ticks and titles."""
    return html.escape(str(text), quote=False)


def show_error(exc: BaseException, *, prefix: str = "") -> None:
    """A friendly one-line error (never a traceback); file and model names in it are shown literally."""
    from backbones.redaction import redact_paths

    text = str(exc) if isinstance(exc, BackboneError) else f"{type(exc).__name__}: {exc}"
    # Visitors of a shared server see paths relative to the caches, never the server's folders.
    st.error(md(redact_paths(f"{prefix}{text}")), icon=":material/error:")


def image_inputs(key: str, *, multiple: bool = True) -> list[tuple[str, bytes]]:
    """Uploaded images (kept for the session) or a built-in sample photo: ``[(name, bytes)]``."""
    samples = caches.sample_photos()
    no_sample = "(none)"  # the option's value; its label is translated
    col_upload, col_sample = st.columns([3, 2])
    with col_upload:
        files = st.file_uploader(
            t("images.upload"),
            type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
            accept_multiple_files=multiple,
            key=f"{key}_upload",
            max_upload_size=actions.IMAGE_UPLOAD_MB,
            help=t("images.upload_help"),
        )
    with col_sample:
        choice = st.selectbox(
            t("images.sample"),
            [no_sample, *samples],
            index=1 if samples else 0,
            key=f"{key}_sample",
            format_func=lambda v: t("images.no_sample") if v == no_sample else v,
        )
    files = files if isinstance(files, list) else ([files] if files else [])
    out = [(f.name, f.getvalue()) for f in files]
    if not out and choice != no_sample:
        out = [(choice, samples[choice])]
    return out


def decoded_images(inputs: list[tuple[str, bytes]]):
    """Decode each input; bad files get their own st.error and are left out."""
    good = []
    for name, data in inputs:
        try:
            image, info = caches.decode_image(data, name)
        except BackboneError as exc:
            show_error(exc)
            continue
        good.append((name, data, image, info))
    return good


def topk_chart(topk: list[dict], *, title: str = "", height: int = 230) -> go.Figure:
    labels = [f"{guess['label']}" for guess in reversed(topk)]
    probs = [guess["prob"] * 100 for guess in reversed(topk)]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=labels,
            orientation="h",
            text=[f"{p:.1f}%" for p in probs],
            textposition="auto",
            marker_color="#2563eb",
            hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        xaxis=dict(title=t("chart.probability"), range=[0, 100]),
        yaxis=dict(automargin=True),
    )
    return fig


def _escape_values(values):
    if values is None or isinstance(values, (str, bytes)):
        return plain_label(values) if isinstance(values, str) else values
    try:
        items = list(values)
    except TypeError:
        return values
    if not any(isinstance(v, str) for v in items):
        return values
    return [plain_label(v) if isinstance(v, str) else v for v in items]


def plot(fig: go.Figure, *, key: str | None = None) -> None:
    """Render a Plotly figure with every trace name and category label escaped (names are user data)."""
    for trace in fig.data:
        for attr in ("name", "legendgroup", "x", "y", "text", "hovertext", "labels"):
            if attr in trace and trace[attr] is not None:
                trace[attr] = _escape_values(trace[attr])
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key=key, width="stretch")


def styled_table(table, decimals: dict[str, int] | None = None):
    """A copy of ``table`` for st.dataframe: thousands separators, two decimals, "—" for missing values.

    Parameter and MAC counts read 61,100,840, never raw integers; a column with missing values becomes
    text (the grid would print "None"), a complete one stays numeric so it sorts as numbers.
    ``decimals`` gives a column other than two places (``{"GMACs": 3}``).
    """
    out = table.copy()
    for column in out.columns:
        values = out[column]
        kind = values.dtype.kind
        if kind not in "iuf":
            # Text, flags and columns with nothing in them (latency before anything was measured: all None,
            # which the grid prints as "None"): missing cells read "—" like in the numeric columns.
            if kind == "O" and values.isna().any():  # text throughout: Arrow refuses "—" among flags
                out[column] = ["—" if _missing(v) else str(v) for v in values]
            continue
        present = values.dropna()
        whole = kind in "iu" or (len(present) > 0 and bool((present == present.round()).all()))
        large = len(present) > 0 and present.abs().max() >= 1000
        if values.isna().any() or (whole and large):
            places = 0 if whole else (decimals or {}).get(column, 2)
            fmt = f"{{:,.{places}f}}"
            out[column] = [("—" if v != v or v is None else fmt.format(v)) for v in values]
        elif whole and kind == "f":
            out[column] = values.astype("Int64")  # small counts (receptive field, jump): numbers without decimals
    return out


def _missing(value) -> bool:
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def table(frame, *, key: str, decimals: dict[str, int] | None = None, **kwargs) -> None:
    """st.dataframe of :func:`styled_table`, remaining decimals shown with two places (``decimals``: per column)."""
    shown = styled_table(frame, decimals)
    formats = {
        c: st.column_config.NumberColumn(format=f"%.{(decimals or {}).get(c, 2)}f")
        for c in shown.columns
        if shown[c].dtype.kind == "f"
    }
    st.dataframe(shown, hide_index=True, key=key, column_config=formats, **kwargs)


def published_figures(option: str, summary) -> str | None:
    """A caption with the published parameters and MACs beside the counted ones, where they differ
    (a checkpoint with another head, another input size, a source that counts other work); else None."""
    from backbones.zoo.figures import backbone_figures

    if option.startswith(state.CUSTOM_PREFIX):
        custom = state.custom_models().get(option[len(state.CUSTOM_PREFIX) :])
        name = custom.arch if custom else None
    else:
        name = option
    try:
        figures = backbone_figures(name, input_size=summary.input_size,
                                   counted=(summary.total_params, summary.total_mult_adds)) if name else None
    except BackboneError:
        return None
    if figures is None or not figures.differs or figures.published_macs is None:
        return None

    def count(n):
        return "—" if n is None else f"{n:,}"

    return t(
        "architecture.published", params=count(figures.published_params), macs=f"{figures.published_macs / 1e9:.3f}",
        shape=" × ".join(map(str, figures.published_input_size)), source=md(figures.published_macs_source),
        counted_params=count(figures.params), counted_macs=f"{figures.macs / 1e9:.3f}",
        counted_shape=" × ".join(map(str, figures.input_size)),
    )


def readable_axis(values) -> dict:
    """Plotly x-axis settings a projector can be read from.

    Over more than a decade: a log axis with ticks at 1-2-5 steps labelled as plain numbers (0.2, 0.5, 1, 2,
    5, 10), never Plotly's unlabelled minor digits. Otherwise a linear axis.
    """
    import math

    positive = [float(v) for v in values if v is not None and float(v) > 0]
    if len(positive) < 2 or max(positive) / min(positive) < 10:
        return {"type": "linear"}
    lo, hi = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in (1, 2, 5)]
    ticks = [tick for tick in ticks if min(positive) / 2.5 <= tick <= max(positive) * 2.5]
    return {"type": "log", "tickvals": ticks, "ticktext": [f"{tick:g}" for tick in ticks]}


def format_size(n: int | None, estimated: bool = False) -> str:
    if not n:
        return t("weights.size_unknown")
    return ("≈ " if estimated else "") + (f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB")


def weights_gate(options: list[str], *, key: str) -> list[str]:
    """Show every selected backbone that has no trained weights here with a Download button; the ready ones.

    One button fetches all missing weights of the selection; the transfer shows MB done / total and speed, a
    Cancel button stops it, and the page's result appears without further clicks once it is done.
    """
    import time

    rows = caches.weights_rows(tuple(options))
    missing = [o for o in options if not caches.can_predict(o, rows)]
    ready = [o for o in options if o not in missing]
    if not missing:
        return ready
    downloadable = [o for o in missing if rows[o]["can_download"]]
    requested: list[str] = []
    with st.container(border=True):
        for option in missing:
            row = rows[option]
            c1, c2 = st.columns([3, 1.3])
            if row["status"] == "none":
                c1.markdown(f"**{md(state.display_name(option))}** · {t('weights.untrained_only')}")
            elif row["can_download"]:
                c1.markdown(f"**{md(state.display_name(option))}** · {t('weights.not_here')}")
                if c2.button(t("weights.download_one", size=format_size(row["size_bytes"], row["size_estimated"])),
                             key=f"{key}_dl_{option}", width="stretch"):
                    requested = [option]
            else:
                c1.markdown(f"**{md(state.display_name(option))}** · {t('weights.offline_missing')}")
        total = sum(rows[o]["size_bytes"] or 0 for o in downloadable)
        if len(downloadable) > 1 and st.button(
            t("weights.download_all", n=len(downloadable), size=format_size(total)), key=f"{key}_dl_all", type="primary"
        ):
            requested = downloadable
        if requested:
            bar = st.progress(0.0, text=t("weights.starting"))
            st.button(t("weights.cancel"), key=f"{key}_dl_cancel")
            started = time.monotonic()

            def report(done: int, size: int | None, name: str) -> None:
                rate = done / max(time.monotonic() - started, 1e-6) / 1e6
                text = t("weights.progress", model=state.display_name(name), done=done / 1e6,
                         total=f"{size / 1e6:.1f}" if size else "?", rate=rate)
                bar.progress(min(done / size, 1.0) if size else 0.0, text=text)

            try:
                actions.download_weights(requested, progress=report)
            except BackboneError as exc:
                show_error(exc)
            else:
                st.rerun()  # the page now shows the model's result
    return ready
