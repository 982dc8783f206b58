"""Architecture: step through a backbone layer by layer (shapes, parameters, MACs, receptive fields)."""

import pandas as pd
import streamlit as st
from plotly.subplots import make_subplots

from backbones.errors import BackboneError
from dashboard import caches, components, state

st.title("Architecture")
st.caption("torchinfo's layer tree with receptive fields traced along the data flow. CLI: `python -m backbones summary NAME --depth D --json`.")

models = state.selected_models()
if not models:
    st.info("Pick a backbone in the sidebar.")
    st.stop()

c1, c2 = st.columns([2, 1])
chosen = c1.multiselect("Backbone (one, or two side by side)", models, default=models[:1], max_selections=2, format_func=state.display_name, key="arch_models")
side_by_side = len(chosen) == 2
if not chosen:
    st.stop()


@st.fragment
def stepper(rows: list, slot: str) -> None:
    """Previous / Next / slider through the layers; a step reruns only this card, not the summary."""
    names = [r.name for r in rows]
    st.markdown("**Step through the layers**")
    pos_key = f"arch_pos_{slot}"
    state.clamp_step(pos_key, len(names))
    b1, b2, b3 = st.columns([1, 6, 1])
    if b1.button("◀ Previous", key=f"arch_prev_{slot}"):
        state.move_step(pos_key, -1, len(names))
    if b3.button("Next ▶", key=f"arch_next_{slot}"):
        state.move_step(pos_key, +1, len(names))
    position = b2.slider("Layer", 0, max(1, len(names) - 1), key=pos_key, label_visibility="collapsed", disabled=len(names) < 2)
    r = rows[min(position, len(rows) - 1)]
    with st.container(border=True):
        st.markdown(f"#### `{r.name}` — {r.type}")
        d1, d2, d3, d4 = st.columns(4)
        d1.metric("Output", " × ".join(map(str, r.output_shape[1:])))
        d2.metric("Params (total)", f"{r.params_total:,}")
        d3.metric("MACs", f"{r.mult_adds:,}")
        d4.metric("Receptive field", "—" if r.receptive_field is None else f"{r.receptive_field} px", None if r.jump is None else f"jump {r.jump}", delta_color="off")
        details = []
        if r.kernel_size:
            details.append(f"kernel {r.kernel_size}, stride {r.stride}, padding {r.padding}, dilation {r.dilation}, groups {r.groups}")
        if r.neurons is not None:
            details.append(f"{r.neurons:,} neurons (output elements per image)")
        details.append(f"input {' × '.join(map(str, r.input_shape[1:]))}")
        st.caption(" · ".join(details))
        # Formulas as code, wrapped: `*` stays a multiplication and nothing is cut off at the card's edge.
        if r.derivation:
            st.code(r.derivation, language=None, wrap_lines=True)
        if r.rf_derivation:
            st.code(f"receptive field: {r.rf_derivation}", language=None, wrap_lines=True)
        if r.rf_note:
            st.caption(f"Note: {components.md(r.rf_note)}")


def render(option: str, slot: str) -> None:
    try:
        with st.spinner(f"Summarising {state.display_name(option)}…"):
            s = caches.summary(option, caches.model_key(option))
    except BackboneError as exc:
        components.show_error(exc)
        return
    m1, m2, m3 = st.columns(3)
    m1.metric("Parameters", f"{s.total_params:,}")
    m2.metric("Trainable", f"{s.trainable_params:,}")
    m3.metric("MACs", f"{s.total_mult_adds / 1e9:.3f} G")
    st.caption(f"input {' × '.join(map(str, s.input_size))}; MACs from torchinfo (1 MAC = 2 FLOPs)")

    f1, f2 = st.columns([1, 2])
    depth = f1.slider("Depth", 1, max(1, s.max_depth), min(2, s.max_depth), key=f"arch_depth_{slot}")
    query = f2.text_input("Search name or type", key=f"arch_query_{slot}", placeholder="e.g. layer4, Conv2d")
    rows = list(s.search(query)) if query else list(s.rows(depth))
    rows = [r for r in rows if r.name]
    table = pd.DataFrame(
        [
            {
                "layer": ("  " * (r.depth - 1)) + (r.name or r.type),
                "type": r.type,
                "output": " × ".join(map(str, r.output_shape[1:])),
                "params": r.params_total,
                "MACs": r.mult_adds,
                "neurons": r.neurons,
                "RF": r.receptive_field,
                "jump": r.jump,
                "trainable": r.trainable,
            }
            for r in rows
        ]
    )
    components.table(table, key=f"arch_table_{slot}", height=320)

    if rows:
        stepper(rows, slot)

    blocks = [b for b in s.blocks(1) if b.name]
    # Two panels sharing the block axis: each quantity on its own scale, no bars hiding behind others.
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("Parameters (M)", "MACs (G)"))
    names = [b.name for b in blocks]
    fig.add_bar(y=names, x=[b.params_total / 1e6 for b in blocks], orientation="h", name="params (M)",
                marker_color="#2563eb", text=[f"{b.params_total / 1e6:,.2f}" for b in blocks], row=1, col=1)
    fig.add_bar(y=names, x=[b.mult_adds / 1e9 for b in blocks], orientation="h", name="GMACs",
                marker_color="#f97316", text=[f"{b.mult_adds / 1e9:,.3f}" for b in blocks], row=1, col=2)
    fig.update_traces(textposition="auto", cliponaxis=False)
    fig.update_layout(height=max(260, 34 * len(blocks) + 90), margin=dict(t=50, l=10, r=10), showlegend=False,
                      title="Per top-level block", yaxis=dict(autorange="reversed"))
    components.plot(fig, key=f"arch_blocks_{slot}")


if side_by_side:
    cols = st.columns(2)
    for i, (col, option) in enumerate(zip(cols, chosen)):
        with col:
            st.subheader(components.md(state.display_name(option)))
            render(option, f"s{i}")
else:
    render(chosen[0], "s0")
