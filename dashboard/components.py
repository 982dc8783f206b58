"""Shared widgets and renderers: the sidebar backbone picker, error boxes, image inputs, charts."""

from __future__ import annotations

import html
import re

import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError
from dashboard import actions, caches, state

SOURCE_BADGE = {"bundled": "bundled weights ✓", "cached": "cached weights ✓", "downloadable": "no trained weights here"}
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def render_sidebar() -> None:
    """The backbone picker every page shares (curated first; type to search the whole catalog)."""
    options = caches.model_options()
    current = state.keep_existing(options)  # a removed checkpoint leaves the selection
    with st.sidebar:
        st.markdown("### Backbones")
        # The canonical selection lives in session_state[SELECTED]; the widget (whose identity
        # changes with its options, e.g. when a checkpoint is added) starts from it and writes back.
        key = state.picker_key()
        state.sync_picker(key, current)
        st.multiselect(
            "Backbones to compare",
            options,
            key=key,
            on_change=state.store_picker,
            args=(key,),
            format_func=state.display_name,
            help="The curated selection comes first; type to search all "
            f"{len(options)} models (torchvision, timm:…, bundled ●, your checkpoints ★).",
            placeholder="Type a name, e.g. resnet",
        )
        rows = {r["name"]: r for r in caches.catalog_rows()}
        for option in state.selected_models():
            if option.startswith(state.CUSTOM_PREFIX):
                custom = state.custom_models().get(option[len(state.CUSTOM_PREFIX) :])
                if custom:
                    st.caption(f"★ **{md(custom.label)}**: your {custom.arch} checkpoint, {custom.num_classes} classes")
                continue
            row = rows.get(option)
            if row:
                status = row["weights"][0]["status"] if row["weights"] else "none"
                st.caption(f"**{row['display_name']}** · {row['source']} · {SOURCE_BADGE.get(status, status)}")
        for message in state.pop_notices():
            st.warning(md(message))
        st.divider()
        st.caption(
            "Published figures are cited where shown; latency is measured on this machine. "
            "Every number has a CLI twin: `python -m backbones --help`."
        )


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
    text = str(exc) if isinstance(exc, BackboneError) else f"{type(exc).__name__}: {exc}"
    st.error(md(f"{prefix}{text}"), icon=":material/error:")


def image_inputs(key: str, *, multiple: bool = True) -> list[tuple[str, bytes]]:
    """Uploaded images (kept for the session) or a built-in sample photo: ``[(name, bytes)]``."""
    samples = caches.sample_photos()
    col_upload, col_sample = st.columns([3, 2])
    with col_upload:
        files = st.file_uploader(
            "Upload images",
            type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
            accept_multiple_files=multiple,
            key=f"{key}_upload",
            max_upload_size=actions.IMAGE_UPLOAD_MB,
            help="JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF.",
        )
    with col_sample:
        choice = st.selectbox(
            "…or use a sample photo",
            ["(none)", *samples],
            index=1 if samples else 0,
            key=f"{key}_sample",
        )
    files = files if isinstance(files, list) else ([files] if files else [])
    out = [(f.name, f.getvalue()) for f in files]
    if not out and choice != "(none)":
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
    labels = [f"{t['label']}" for t in reversed(topk)]
    probs = [t["prob"] * 100 for t in reversed(topk)]
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
        xaxis=dict(title="probability (%)", range=[0, 100]),
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


def styled_table(table):
    """A copy of ``table`` for st.dataframe: thousands separators, two decimals, "—" for missing values.

    Parameter and MAC counts read 61,100,840, never raw integers; a column with missing values becomes
    text (the grid would print "None"), a complete one stays numeric so it sorts as numbers.
    """
    out = table.copy()
    for column in out.columns:
        values = out[column]
        kind = values.dtype.kind
        if kind not in "iuf":
            continue
        present = values.dropna()
        whole = kind in "iu" or (len(present) > 0 and bool((present == present.round()).all()) and present.abs().max() >= 1000)
        if values.isna().any() or whole:
            fmt = "{:,.0f}" if whole else "{:,.2f}"
            out[column] = [("—" if v != v or v is None else fmt.format(v)) for v in values]
    return out


def table(frame, *, key: str, **kwargs) -> None:
    """st.dataframe of :func:`styled_table`, remaining decimals shown with two places."""
    shown = styled_table(frame)
    formats = {c: st.column_config.NumberColumn(format="%.2f") for c in shown.columns if shown[c].dtype.kind == "f"}
    st.dataframe(shown, hide_index=True, key=key, column_config=formats, **kwargs)


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
    ticks = [t for t in ticks if min(positive) / 2.5 <= t <= max(positive) * 2.5]
    return {"type": "log", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}
