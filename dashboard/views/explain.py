"""Explain: Grad-CAM, Guided Grad-CAM, saliency, integrated gradients, occlusion and attention rollout, plus feature maps.

CNNs and the catalog's transformers alike: a ViT's or Swin's layers are laid out on their grid by the library, and
a method that does not apply to the chosen model (guided methods on GELU networks, rollout on anything but a ViT)
says why instead of running.
"""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError
from dashboard import caches, components, state
from dashboard.i18n import DEFAULT, catalogue, t
from viz.cam import METHODS
from viz.overlay import overlay_image, render_grid, to_png_bytes

TARGET_MODES = {"top-1": "explain.target_top1", "one of the top 5": "explain.target_top5", "any class": "explain.target_any"}
# Shown tables: the data keep their English column names, the headers follow the session's language.
RANK_COLUMNS = {
    "backbone": "explain.rank_backbone",
    "method": "explain.rank_method",
    "layer": "explain.rank_layer",
    "deletion AUC ↓": "explain.rank_deletion",
    "insertion AUC ↑": "explain.rank_insertion",
    "random deletion": "explain.rank_random_deletion",
    "random insertion": "explain.rank_random_insertion",
    "insertion − deletion": "explain.rank_difference",
}
CHANNEL_COLUMNS = {
    "index": "explain.channel_index",
    "mean": "explain.channel_mean",
    "max": "explain.channel_max",
    "std": "explain.channel_std",
    "fraction_active": "explain.channel_active",
}


def method_text(method: str, field: str) -> str:
    """A method's ``description`` or ``passes`` in this language; the library's own words for a method the
    catalogues do not know yet."""
    key = f"explain.method_{field}.{method}"
    return t(key) if key in catalogue(DEFAULT) else getattr(METHODS[method], field)


def header(columns: dict[str, str]):
    """A ``rename`` function: a column's header in this language, unknown columns unchanged."""
    return lambda column: t(columns[column]) if column in columns else column


st.title(t("explain.title"))
st.caption(t("explain.caption"))

inputs = components.image_inputs("explain", multiple=False)
images = components.decoded_images(inputs)
runnable = components.weights_gate(state.selected_models(), key="explain")
if not runnable:
    st.stop()
if not images:
    st.info(t("explain.no_image"))
    st.stop()
name, data, image, info = images[0]

c1, c2 = st.columns(2)
option = c1.selectbox(t("explain.backbone"), runnable, format_func=state.display_name, key="explain_model")
method = c2.selectbox(
    t("explain.method"), list(METHODS), format_func=lambda m: METHODS[m].title, key="explain_method",
    help="\n\n".join(f"**{m.title}** ({method_text(n, 'passes')}): {method_text(n, 'description')}" for n, m in METHODS.items()),
)
GRID_ALPHA = 0.5  # the grids below: the slider applies to the main overlay
st.caption(t("explain.method_caption", description=method_text(method, "description"), cost=method_text(method, "passes")))

try:
    key = caches.model_key(option)
    loaded = caches.loaded_model(option)
    refused = caches.refused_methods(option, key)
    if method in refused:  # before any forward pass: the page says why instead
        st.warning(t("explain.method_refused", method=METHODS[method].title, reason=refused[method]), icon=":material/block:")
        st.stop()
    with st.spinner(t("explain.reading_layers")):
        layers, default, why = caches.cam_layers(option, key)
        layouts, not_offered = caches.layer_layouts(option, key)
    predictions = caches.predictions(option, key, caches.digest(data), data, name, 5)
except BackboneError as exc:
    components.show_error(exc)
    st.stop()

c1, c2 = st.columns(2)
layer = None
if METHODS[method].uses_layer:
    if default is None:
        st.error(why or t("explain.no_spatial_layer"), icon=":material/error:")
        st.stop()
    layer = c1.selectbox(
        t("explain.layer"), layers, index=layers.index(default) if default in layers else 0,
        key=f"explain_layer_{option}", help=t("explain.layer_help", layer=default),
    )
    # Transformer layers: how the tokens were laid out, and which layers are left out and why.
    if layer in layouts:
        c1.caption(t("explain.layout", description=layouts[layer]))
    if not_offered:
        c1.caption(t("explain.not_offered", n=len(not_offered), note=next(iter(not_offered.values()))))
target_mode = c2.radio(t("explain.class"), list(TARGET_MODES), format_func=lambda m: t(TARGET_MODES[m]), horizontal=True,
                       key="explain_target_mode")
target = None
if target_mode == "one of the top 5":
    choice = st.selectbox(
        t("explain.target_class"), [p["index"] for p in predictions], key="explain_target_top5",
        format_func=lambda i: next(f"{p['label']} ({p['prob']:.1%})" for p in predictions if p["index"] == i),
    )
    target = int(choice)
elif target_mode == "any class":
    target = int(st.selectbox(t("explain.target_class"), range(loaded.num_classes), format_func=loaded.label, key="explain_target_any"))

try:
    with st.spinner(t("explain.computing", method=METHODS[method].title)):
        exp = caches.explanation(option, key, data, name, method, layer, target)
except BackboneError as exc:
    components.show_error(exc)
    st.stop()



@st.fragment
def overlay_panel() -> None:
    """The photo and its heatmap; moving the opacity slider reruns only this, never the model."""
    alpha = st.slider(t("explain.opacity"), 0.0, 1.0, 0.5, 0.05, key="explain_alpha")
    left, right = st.columns(2)
    with left:
        st.image(image, caption=components.md(f"{name} ({info.width}×{info.height})"), width="stretch")
    with right:
        over = overlay_image(image, exp.heatmap, alpha=alpha, crop_box=exp.crop_box)
        st.image(over, caption=components.md(exp.title), width="stretch")
        # Drawn into the image with Pillow's default font, which has no CJK glyphs: these labels stay English.
        st.image(
            caches.colour_scale("0: no evidence for the class", "1: the strongest evidence in this image"),
            width="stretch",
        )
    st.download_button(t("explain.download_overlay"), lambda: to_png_bytes(over), file_name=f"{method}-{state.store_name(option)}.png", mime="image/png", key="explain_png")


overlay_panel()
peak = exp.peak
st.caption(" · ".join([
    t("explain.target", label=components.md(exp.target.label), index=exp.target.index, prob=exp.target.prob),
    t("explain.peak", row=peak[0], column=peak[1]) if peak else t("explain.empty_map"),
    t("explain.colour_note"),
]))



def faithfulness_panel() -> None:
    """The map's deletion / insertion scores beside a random map's, and on request their curves."""
    try:
        with st.spinner(t("explain.scoring")):
            f = caches.faithfulness(option, key, data, name, method, layer, target)
    except BackboneError as exc:
        components.show_error(exc)
        return
    m1, m2, m3 = st.columns([1, 1, 1.3])
    m1.metric(t("explain.deletion_auc"), f"{f.score.deletion_auc:.3f}",
              t("explain.random_map", auc=f.random.deletion_auc), delta_color="off")
    m2.metric(t("explain.insertion_auc"), f"{f.score.insertion_auc:.3f}",
              t("explain.random_map", auc=f.random.insertion_auc), delta_color="off")
    verdict = (f.score.deletion_auc < f.random.deletion_auc) + (f.score.insertion_auc > f.random.insertion_auc)
    m3.caption(t("explain.faithfulness_caption", note=t("explain.faithfulness_note"),
                 verdict=t(("explain.beats_none", "explain.beats_one", "explain.beats_both")[verdict])))
    if st.toggle(t("explain.show_curves"), key="explain_curves"):
        fig = go.Figure()
        steps = len(f.score.deletion_curve)
        xs = [i / (steps - 1) for i in range(steps)]
        for curve, label, dash in [(f.score.deletion_curve, t("explain.curve_deletion"), None),
                                   (f.random.deletion_curve, t("explain.curve_deletion_random"), "dot"),
                                   (f.score.insertion_curve, t("explain.curve_insertion"), None),
                                   (f.random.insertion_curve, t("explain.curve_insertion_random"), "dot")]:
            fig.add_scatter(x=xs, y=list(curve), mode="lines", name=label, line=dict(dash=dash))
        fig.update_layout(height=330, margin=dict(t=30), xaxis_title=t("explain.curves_x"),
                          yaxis_title=f"p({exp.target.label})", legend=dict(orientation="h", y=-0.3))
        components.plot(fig, key="explain_curves_chart")


faithfulness_panel()


def pack_bytes() -> bytes:
    """The slide pack of this view: the overlay figure, top-5 and scores as CSV, settings and CLI lines."""
    from viz.pack import build_pack, explain_commands, render_explanations_figure

    f = caches.faithfulness(option, key, data, name, method, layer, target)
    caption = f"deletion {f.score.deletion_auc:.3f} (random {f.random.deletion_auc:.3f}) · insertion {f.score.insertion_auc:.3f} (random {f.random.insertion_auc:.3f})"
    figure = render_explanations_figure(image, [exp], title=f"{state.display_name(option)} · {METHODS[method].title}", captions=[caption])
    model = state.store_name(option)
    return build_pack(
        {"explanation": figure},
        {"top5": predictions, "faithfulness": [f.to_dict() | {"target": exp.target.label}]},
        {"models": [model], "weights": loaded.weights, "layer": layer, "target": exp.target.to_dict(),
         "method": method, "device": str(loaded.device), "image": name},
        explain_commands(name, state.model_ref(option), method=method, layer=layer, target=exp.target.index),
    )


st.download_button(t("explain.pack"), pack_bytes,
                   file_name=f"backbone-lens-explain-{state.store_name(option)}.zip", mime="application/zip",
                   key="explain_pack")

tab_top5, tab_models, tab_rank, tab_sanity, tab_features = st.tabs(
    [t("explain.tab_top5"), t("explain.tab_models"), t("explain.tab_rank"), t("explain.tab_sanity"), t("explain.tab_features")]
)

with tab_rank:
    st.caption(t("explain.rank_caption"))
    if st.toggle(t("explain.rank_toggle"), key="explain_rank_on"):
        with st.spinner(t("explain.rank_spinner")):
            try:
                ranking = caches.faithfulness_ranking(tuple(runnable[:3]), tuple(caches.model_key(o) for o in runnable[:3]), data, name)
            except BackboneError as exc:
                components.show_error(exc)
                ranking = []
        if ranking:
            components.table(pd.DataFrame(ranking).rename(columns=header(RANK_COLUMNS)), key="explain_rank_table")

with tab_sanity:
    st.caption(t("explain.sanity_caption"))
    if st.toggle(t("explain.sanity_toggle"), key="explain_sanity_on"):
        try:
            with st.spinner(t("explain.sanity_spinner")):
                check = caches.sanity(option, key, data, name, method, layer, target)
        except BackboneError as exc:
            components.show_error(exc)
        else:
            crop = loaded.preprocessing.resized_crop(image)
            shown = [(t("explain.original"), check.original, None)] + [(s.randomized, s.heatmap, s) for s in check.steps]
            per_row = 6
            for start in range(0, len(shown), per_row):
                cols = st.columns(per_row)
                for col, (label, heat, s) in zip(cols, shown[start : start + per_row]):
                    col.image(overlay_image(crop, heat, alpha=GRID_ALPHA), width="stretch",
                              caption=components.md(label if s is None else f"{label} · ρ {s.spearman:.2f}"))
            fig = go.Figure()
            names = [s.randomized for s in check.steps]
            fig.add_scatter(x=names, y=[s.spearman for s in check.steps], mode="lines+markers", name=t("explain.spearman"))
            fig.add_scatter(x=names, y=[s.ssim for s in check.steps], mode="lines+markers", name="SSIM")
            fig.update_layout(height=340, margin=dict(t=30), yaxis=dict(title=t("explain.sanity_y"), range=[-1, 1]),
                              xaxis_title=t("explain.sanity_x"), legend=dict(orientation="h", y=-0.45))
            components.plot(fig, key="explain_sanity_chart")

with tab_top5:
    if st.toggle(t("explain.top5_toggle"), key="explain_top5_on"):
        try:
            with st.spinner(t("explain.top5_spinner")):
                exps = caches.explanations_topk(option, key, data, name, method, layer, 5)
            grid = render_grid(image, exps, normalize="joint", alpha=GRID_ALPHA, columns=3, titles=[f"{e.target.label} {e.target.prob:.0%}" for e in exps])
            st.image(grid, width="stretch")
            st.download_button(t("explain.download_grid"), lambda grid=grid: to_png_bytes(grid), file_name="top5.png", mime="image/png", key="explain_top5_png")
        except BackboneError as exc:
            components.show_error(exc)

with tab_models:
    others = st.multiselect(t("explain.backbones"), runnable, default=runnable[:3], format_func=state.display_name, key="explain_grid_models")
    shared = st.toggle(t("explain.shared_scale"), value=True, key="explain_shared", help=t("explain.shared_scale_help"))
    if others:
        exps, titles = [], []
        for o in others:
            try:
                with st.spinner(f"{state.display_name(o)}…"):
                    lay = None
                    if METHODS[method].uses_layer:
                        _, lay, _ = caches.cam_layers(o, caches.model_key(o))
                    exps.append(caches.explanation(o, caches.model_key(o), data, name, method, lay, None))
                    titles.append(f"{state.display_name(o)}: {exps[-1].target.label}")
            except BackboneError as exc:
                components.show_error(exc, prefix=f"{state.display_name(o)}: ")
        if exps:
            grid = caches.explanation_grid(data, name, tuple(exps), "joint" if shared else "each", GRID_ALPHA, tuple(titles))
            st.image(grid, width="stretch")
            st.download_button(t("explain.download_figure"), lambda grid=grid: to_png_bytes(grid), file_name="backbones-explained.png", mime="image/png", key="explain_grid_png")

with tab_features:
    fl = st.selectbox(t("explain.feature_layer"), layers, index=layers.index(layer or default) if (layer or default) in layers else max(0, len(layers) - 1), key=f"explain_feat_layer_{option}") if layers else None
    if fl:
        try:
            with st.spinner(t("explain.reading_activations")):
                fm = caches.features(option, key, data, name, fl, 16)
        except BackboneError as exc:
            components.show_error(exc)
        else:
            st.caption(t("explain.features_caption", layer=fl, shape=" × ".join(map(str, fm.output_shape))))
            st.image(caches.feature_grid(option, key, data, name, fl, 16), width="stretch")
            st.dataframe(pd.DataFrame([c.to_dict() for c in fm.top]).rename(columns=header(CHANNEL_COLUMNS)),
                         hide_index=True, key="explain_feat_table")
