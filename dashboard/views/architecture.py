"""Architecture: step through a backbone layer by layer (shapes, parameters, MACs, receptive fields)."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from backbones.errors import BackboneError
from dashboard import caches, components, state
from dashboard.i18n import t

st.title(t("architecture.title"))
st.caption(t("architecture.caption"))

models = state.selected_models()
if not models:
    st.info(t("architecture.pick"))
    st.stop()

c1, c2 = st.columns([2, 1])
chosen = c1.multiselect(t("architecture.backbones"), models, default=models[:1], max_selections=2, format_func=state.display_name, key="arch_models")
side_by_side = len(chosen) == 2
if not chosen:
    st.stop()


@st.fragment
def stepper(rows: list, slot: str) -> None:
    """Previous / Next / slider through the layers; a step reruns only this card, not the summary."""
    names = [r.name for r in rows]
    st.markdown(f"**{t('architecture.step')}**")
    pos_key = f"arch_pos_{slot}"
    # Open on the first layer with something to derive (AlexNet: features.0), not on a container.
    first = next((i for i, r in enumerate(rows) if r.derivation), 0)
    state.clamp_step(pos_key, len(names), default=first)
    b1, b2, b3 = st.columns([1, 6, 1])
    if b1.button(t("architecture.previous"), key=f"arch_prev_{slot}"):
        state.move_step(pos_key, -1, len(names))
    if b3.button(t("architecture.next"), key=f"arch_next_{slot}"):
        state.move_step(pos_key, +1, len(names))
    position = b2.slider(t("architecture.layer"), 0, max(1, len(names) - 1), key=pos_key, label_visibility="collapsed", disabled=len(names) < 2)
    r = rows[min(position, len(rows) - 1)]
    with st.container(border=True):
        st.markdown(f"#### `{r.name}` — {r.type}")
        d1, d2, d3, d4 = st.columns(4)
        d1.metric(t("architecture.output"), " × ".join(map(str, r.output_shape[1:])))
        d2.metric(t("architecture.params_total"), f"{r.params_total:,}")
        d3.metric(t("architecture.macs"), "—" if r.macs_note else f"{r.mult_adds:,}")
        d4.metric(t("architecture.receptive_field"), "—" if r.receptive_field is None else f"{r.receptive_field} px",
                  None if r.jump is None else t("architecture.jump", jump=r.jump), delta_color="off")
        details = []
        if r.kernel_size:
            details.append(t("architecture.conv_details", kernel=r.kernel_size, stride=r.stride, padding=r.padding,
                             dilation=r.dilation, groups=r.groups))
        if r.neurons is not None:
            details.append(t("architecture.neurons", n=r.neurons))
        details.append(t("architecture.input", shape=" × ".join(map(str, r.input_shape[1:]))))
        st.caption(" · ".join(details))
        # Formulas as code, wrapped: `*` stays a multiplication and nothing is cut off at the card's edge.
        if r.derivation:
            st.code(r.derivation, language=None, wrap_lines=True)
        if r.rf_derivation:
            st.code(t("architecture.rf_derivation", derivation=r.rf_derivation), language=None, wrap_lines=True)
        if r.rf_note:
            st.caption(t("architecture.note", note=components.md(r.rf_note)))
        if r.macs_note:
            st.caption(t("architecture.not_attributed", note=components.md(r.macs_note)))


# --- Effective receptive field (issue 24): one self-contained block, called once from render(). ---
def erf_panel(option: str, slot: str, s) -> None:
    """ERF beside the theoretical RF per stage, measured on request (backward passes), and the map of one layer."""
    st.markdown(f"**{t('architecture.erf.title')}**")
    st.caption(t("architecture.erf.caption"))
    can_train = caches.can_predict(option, caches.weights_rows((option,))) if not option.startswith(state.CUSTOM_PREFIX) else True
    c1, c2, c3 = st.columns([1.4, 1, 1])
    trained = c1.toggle(t("architecture.erf.trained"), value=can_train, disabled=not can_train, key=f"arch_erf_trained_{slot}",
                        help=None if can_train else t("architecture.erf.no_weights"))
    images = c2.number_input(t("architecture.erf.images"), 1, 8, 4, key=f"arch_erf_images_{slot}")
    if c3.button(t("architecture.erf.measure"), key=f"arch_erf_go_{slot}"):
        state.request_erf(option, trained, images)
    if not state.erf_requested(option, trained, images):
        return
    try:
        with st.spinner(t("architecture.erf.measuring")):
            erf = caches.erf(option, caches.model_key(option), bool(trained), int(images))
    except BackboneError as exc:
        components.show_error(exc)
        return
    from backbones.summary.erf import ratio

    rows = []
    for layer in erf.layers:
        rf = None if not s.receptive_fields else next((r.receptive_field for r in s.layers if r.name == layer.name), None)
        r = ratio(layer.side, rf)
        rows.append({t("architecture.col.layer"): layer.name, t("architecture.erf.col.grid"): " × ".join(map(str, layer.grid)),
                     t("architecture.col.rf"): rf, t("architecture.erf.col.side"): layer.side,
                     t("architecture.erf.col.radius"): round(layer.radius, 1), t("architecture.erf.col.ratio"): r})
    components.table(pd.DataFrame(rows), key=f"arch_erf_table_{slot}")
    which = t("architecture.erf.trained_as", weights=erf.weights) if erf.trained else t("architecture.erf.untrained_as")
    st.caption(t("architecture.erf.summary", which=which, images=erf.images, inputs=erf.inputs, passes=erf.passes,
                 seconds=erf.seconds, model=state.store_name(option))
               + ("" if s.receptive_fields else " " + t("architecture.erf.transformer")))
    names = [layer.name for layer in erf.layers]
    chosen = st.selectbox(t("architecture.erf.layer"), names, index=len(names) - 1, key=f"arch_erf_layer_{slot}")
    layer = erf.find(chosen)
    fig = go.Figure(go.Heatmap(z=layer.map, colorscale="Viridis", showscale=False))
    cy, cx = layer.centre
    half = layer.side / 2
    fig.add_shape(type="rect", x0=cx - half, x1=cx + half, y0=cy - half, y1=cy + half, line=dict(color="white", width=2))
    fig.add_shape(type="circle", x0=cx - layer.radius, x1=cx + layer.radius, y0=cy - layer.radius, y1=cy + layer.radius,
                  line=dict(color="white", width=1, dash="dot"))
    fig.update_layout(height=420, margin=dict(t=40, l=10, r=10, b=10), yaxis=dict(autorange="reversed", scaleanchor="x"),
                      title=t("architecture.erf.map_title", layer=chosen, side=layer.side, radius=layer.radius,
                              share=layer.share))
    components.plot(fig, key=f"arch_erf_map_{slot}")


def render(option: str, slot: str) -> None:
    try:
        with st.spinner(t("architecture.summarising", model=state.display_name(option))):
            s = caches.summary(option, caches.model_key(option))
    except BackboneError as exc:
        components.show_error(exc)
        return
    m1, m2, m3 = st.columns(3)
    m1.metric(t("architecture.parameters"), f"{s.total_params:,}")
    m2.metric(t("architecture.trainable"), f"{s.trainable_params:,}")
    m3.metric(t("architecture.macs"), f"{s.total_mult_adds / 1e9:.3f} G")
    st.caption(t("architecture.input_macs", shape=" × ".join(map(str, s.input_size))))
    published = components.published_figures(option, s)
    if published:
        st.caption(published)

    f1, f2 = st.columns([1, 2])
    depth = f1.slider(t("architecture.depth"), 1, max(1, s.max_depth), min(2, s.max_depth), key=f"arch_depth_{slot}")
    query = f2.text_input(t("architecture.search"), key=f"arch_query_{slot}", placeholder=t("architecture.search_placeholder"))
    rows = list(s.search(query)) if query else list(s.rows(depth))
    rows = [r for r in rows if r.name]
    headers = {
        "layer": t("architecture.col.layer"), "type": t("architecture.col.type"),
        "output": t("architecture.col.output"), "params": t("architecture.col.params"),
        "MACs": t("architecture.col.macs"), "neurons": t("architecture.col.neurons"), "RF": t("architecture.col.rf"),
        "jump": t("architecture.col.jump"), "trainable": t("architecture.col.trainable"),
    }
    table = pd.DataFrame(
        [
            {
                "layer": ("  " * (r.depth - 1)) + (r.name or r.type),
                "type": r.type,
                "output": " × ".join(map(str, r.output_shape[1:])),
                "params": r.params_total,
                "MACs": None if r.macs_note else r.mult_adds,
                "neurons": r.neurons,
                "RF": r.receptive_field,
                "jump": r.jump,
                "trainable": r.trainable,
            }
            for r in rows
        ]
    ).rename(columns=headers)
    components.table(table, key=f"arch_table_{slot}", height=320)

    if rows:
        stepper(rows, slot)

    erf_panel(option, slot, s)

    blocks = [b for b in s.blocks(1) if b.name]
    # Two panels sharing the block axis: each quantity on its own scale, no bars hiding behind others.
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=(t("architecture.chart.params"), t("architecture.chart.macs")))
    names = [b.name for b in blocks]
    fig.add_bar(y=names, x=[b.params_total / 1e6 for b in blocks], orientation="h", name=t("architecture.chart.params_trace"),
                marker_color="#2563eb", text=[f"{b.params_total / 1e6:,.2f}" for b in blocks], row=1, col=1)
    fig.add_bar(y=names, x=[b.mult_adds / 1e9 for b in blocks], orientation="h", name=t("architecture.chart.macs_trace"),
                marker_color="#f97316", text=[f"{b.mult_adds / 1e9:,.3f}" for b in blocks], row=1, col=2)
    fig.update_traces(textposition="auto", cliponaxis=False)
    fig.update_layout(height=max(260, 34 * len(blocks) + 90), margin=dict(t=50, l=10, r=10), showlegend=False,
                      title=t("architecture.chart.title"), yaxis=dict(autorange="reversed"))
    components.plot(fig, key=f"arch_blocks_{slot}")


if side_by_side:
    cols = st.columns(2)
    for i, (col, option) in enumerate(zip(cols, chosen)):
        with col:
            st.subheader(components.md(state.display_name(option)))
            render(option, f"s{i}")
else:
    render(chosen[0], "s0")
