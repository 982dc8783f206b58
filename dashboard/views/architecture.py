"""Architecture: step through a backbone layer by layer (shapes, parameters, MACs, receptive fields)."""

import pandas as pd
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
