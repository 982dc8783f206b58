"""Explain: Grad-CAM, Guided Grad-CAM, saliency, integrated gradients and occlusion, plus feature maps."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError
from dashboard import caches, components, state
from viz.cam import METHODS
from viz.features import render_feature_grid
from viz.overlay import overlay_image, render_grid, to_png_bytes

st.title("Explain predictions")
st.caption(
    "Where does the model look? CLI: `python -m viz cam IMG --model NAME --method gradcam --layer L "
    "--target LABEL --out overlay.png --json`, `python -m viz features IMG --model NAME --layer L`."
)

inputs = components.image_inputs("explain", multiple=False)
images = components.decoded_images(inputs)
runnable = components.weights_gate(state.selected_models(), key="explain")
if not runnable:
    st.stop()
if not images:
    st.info("Upload an image or choose a sample photo.")
    st.stop()
name, data, image, info = images[0]

c1, c2 = st.columns(2)
option = c1.selectbox("Backbone", runnable, format_func=state.display_name, key="explain_model")
method = c2.selectbox(
    "Method", list(METHODS), format_func=lambda m: METHODS[m].title, key="explain_method",
    help="\n\n".join(f"**{m.title}** ({m.passes}): {m.description}" for m in METHODS.values()),
)
GRID_ALPHA = 0.5  # the grids below: the slider applies to the main overlay
st.caption(f"{METHODS[method].description} Cost: {METHODS[method].passes}.")

try:
    key = caches.model_key(option)
    loaded = caches.loaded_model(option)
    with st.spinner("Reading the layers…"):
        layers, default, why = caches.cam_layers(option, key)
    predictions = caches.predictions(option, key, caches.digest(data), data, name, 5)
except BackboneError as exc:
    components.show_error(exc)
    st.stop()

c1, c2 = st.columns(2)
layer = None
if METHODS[method].uses_layer:
    if default is None:
        st.error(why or "this model has no spatial layer for Grad-CAM", icon=":material/error:")
        st.stop()
    layer = c1.selectbox(
        "Layer (spatial outputs, forward order)", layers, index=layers.index(default) if default in layers else 0,
        key=f"explain_layer_{option}", help=f"Default: {default}, the last spatial layer before global pooling.",
    )
target_mode = c2.radio("Class", ["top-1", "one of the top 5", "any class"], horizontal=True, key="explain_target_mode")
target = None
if target_mode == "one of the top 5":
    choice = st.selectbox(
        "Target class", [p["index"] for p in predictions], key="explain_target_top5",
        format_func=lambda i: next(f"{p['label']} ({p['prob']:.1%})" for p in predictions if p["index"] == i),
    )
    target = int(choice)
elif target_mode == "any class":
    target = int(st.selectbox("Target class", range(loaded.num_classes), format_func=loaded.label, key="explain_target_any"))

try:
    with st.spinner(f"Computing {METHODS[method].title}…"):
        exp = caches.explanation(option, key, data, name, method, layer, target)
except BackboneError as exc:
    components.show_error(exc)
    st.stop()



@st.fragment
def overlay_panel() -> None:
    """The photo and its heatmap; moving the opacity slider reruns only this, never the model."""
    alpha = st.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="explain_alpha")
    left, right = st.columns(2)
    with left:
        st.image(image, caption=components.md(f"{name} ({info.width}×{info.height})"), width="stretch")
    with right:
        over = overlay_image(image, exp.heatmap, alpha=alpha, crop_box=exp.crop_box)
        st.image(over, caption=components.md(exp.title), width="stretch")
        st.image(
            caches.colour_scale("0: no evidence for the class", "1: the strongest evidence in this image"),
            width="stretch",
        )
    st.download_button("Download overlay (PNG)", to_png_bytes(over), file_name=f"{method}-{state.store_name(option)}.png", mime="image/png", key="explain_png")


overlay_panel()
peak = exp.peak
st.caption(
    f"Target: **{components.md(exp.target.label)}** (class {exp.target.index}, p = {exp.target.prob:.1%})"
    + (f" · peak at row {peak[0]}, column {peak[1]}" if peak else " · empty map: the class score does not depend on this layer positively")
    + " · colours are scaled to this map's own maximum; the faded area outside the outline is what the model's "
    "centre crop left out (it never saw it)."
)



def faithfulness_panel() -> None:
    """The map's deletion / insertion scores beside a random map's, and on request their curves."""
    try:
        with st.spinner("Scoring the map (deletion and insertion, 32 steps)…"):
            f = caches.faithfulness(option, key, data, name, method, layer, target)
    except BackboneError as exc:
        components.show_error(exc)
        return
    m1, m2, m3 = st.columns([1, 1, 1.3])
    m1.metric("Deletion AUC (lower is better)", f"{f.score.deletion_auc:.3f}",
              f"random map {f.random.deletion_auc:.3f}", delta_color="off")
    m2.metric("Insertion AUC (higher is better)", f"{f.score.insertion_auc:.3f}",
              f"random map {f.random.insertion_auc:.3f}", delta_color="off")
    verdict = (f.score.deletion_auc < f.random.deletion_auc) + (f.score.insertion_auc > f.random.insertion_auc)
    m3.caption(
        "Delete the most salient pixels first: the class probability should fall faster than for a random map "
        "(as smooth as this one). Insert them into a blurred copy: it should rise faster. "
        + ("This map beats the random one on both." if verdict == 2 else
           "This map beats the random one on one of the two." if verdict == 1 else
           "This map does not beat a random one here.")
    )
    if st.toggle("Show the deletion and insertion curves", key="explain_curves"):
        fig = go.Figure()
        steps = len(f.score.deletion_curve)
        xs = [i / (steps - 1) for i in range(steps)]
        for curve, label, dash in [(f.score.deletion_curve, "deletion · this map", None),
                                   (f.random.deletion_curve, "deletion · random map", "dot"),
                                   (f.score.insertion_curve, "insertion · this map", None),
                                   (f.random.insertion_curve, "insertion · random map", "dot")]:
            fig.add_scatter(x=xs, y=list(curve), mode="lines", name=label, line=dict(dash=dash))
        fig.update_layout(height=330, margin=dict(t=30), xaxis_title="fraction of pixels deleted / inserted",
                          yaxis_title=f"p({exp.target.label})", legend=dict(orientation="h", y=-0.3))
        components.plot(fig, key="explain_curves_chart")


faithfulness_panel()


def pack_bytes() -> bytes:
    """The slide pack of this view: the overlay figure, top-5 and scores as CSV, settings and CLI lines."""
    from viz.pack import build_pack, render_explanations_figure

    f = caches.faithfulness(option, key, data, name, method, layer, target)
    caption = f"deletion {f.score.deletion_auc:.3f} (random {f.random.deletion_auc:.3f}) · insertion {f.score.insertion_auc:.3f} (random {f.random.insertion_auc:.3f})"
    figure = render_explanations_figure(image, [exp], title=f"{state.display_name(option)} · {METHODS[method].title}", captions=[caption])
    target_arg = f" --target {exp.target.index}"
    layer_arg = f" --layer {layer}" if layer else ""
    model = state.store_name(option)
    return build_pack(
        {"explanation": figure},
        {"top5": predictions, "faithfulness": [f.to_dict() | {"target": exp.target.label}]},
        {"models": [model], "weights": loaded.weights, "layer": layer, "target": exp.target.to_dict(),
         "method": method, "device": str(loaded.device), "image": name},
        [f"python -m viz cam IMG --model {model} --method {method}{layer_arg}{target_arg} --out overlay.png --json",
         f"python -m viz faithfulness IMG --model {model} --method {method}{target_arg} --json",
         f"python -m backbones predict IMG --model {model} --topk 5 --json"],
    )


st.download_button("Download slide pack (zip: 1920 px figures, CSV, settings, commands)", pack_bytes,
                   file_name=f"backbone-lens-explain-{state.store_name(option)}.zip", mime="application/zip",
                   key="explain_pack")

tab_top5, tab_models, tab_rank, tab_sanity, tab_features = st.tabs(
    ["Top-5 classes", "Several backbones", "Rank methods", "Sanity check", "Feature maps"]
)

with tab_rank:
    st.caption("Every method on every selected backbone for this photo's top-1 class, ranked by insertion minus "
               "deletion AUC (CLI: `python -m viz faithfulness IMG --model M --method METHOD --json`).")
    if st.toggle("Rank methods × backbones (about a minute per backbone on a CPU)", key="explain_rank_on"):
        with st.spinner("Scoring every method on every backbone…"):
            try:
                ranking = caches.faithfulness_ranking(tuple(runnable[:3]), tuple(caches.model_key(o) for o in runnable[:3]), data, name)
            except BackboneError as exc:
                components.show_error(exc)
                ranking = []
        if ranking:
            components.table(pd.DataFrame(ranking), key="explain_rank_table")

with tab_sanity:
    st.caption("Model randomisation (Adebayo et al. 2018): re-initialise the layers from the classifier down, one "
               "block at a time, on a private copy, and compare each new map with the original. A map that barely "
               "changes when the weights are destroyed does not explain the model. "
               "CLI: `python -m viz sanity IMG --model M --method METHOD --json`.")
    if st.toggle("Run the sanity check (about as long as 50 forward passes)", key="explain_sanity_on"):
        try:
            with st.spinner("Randomising block by block…"):
                check = caches.sanity(option, key, data, name, method, layer, target)
        except BackboneError as exc:
            components.show_error(exc)
        else:
            crop = loaded.preprocessing.resized_crop(image)
            shown = [("original", check.original, None)] + [(s.randomized, s.heatmap, s) for s in check.steps]
            per_row = 6
            for start in range(0, len(shown), per_row):
                cols = st.columns(per_row)
                for col, (label, heat, s) in zip(cols, shown[start : start + per_row]):
                    col.image(overlay_image(crop, heat, alpha=GRID_ALPHA), width="stretch",
                              caption=components.md(label if s is None else f"{label} · ρ {s.spearman:.2f}"))
            fig = go.Figure()
            names = [s.randomized for s in check.steps]
            fig.add_scatter(x=names, y=[s.spearman for s in check.steps], mode="lines+markers", name="Spearman rank correlation")
            fig.add_scatter(x=names, y=[s.ssim for s in check.steps], mode="lines+markers", name="SSIM")
            fig.update_layout(height=340, margin=dict(t=30), yaxis=dict(title="similarity to the original map", range=[-1, 1]),
                              xaxis_title="randomised down to (classifier first)", legend=dict(orientation="h", y=-0.45))
            components.plot(fig, key="explain_sanity_chart")

with tab_top5:
    if st.toggle("Explain each of the top 5 classes", key="explain_top5_on"):
        try:
            with st.spinner("Explaining the top 5…"):
                exps = caches.explanations_topk(option, key, data, name, method, layer, 5)
            grid = render_grid(image, exps, normalize="joint", alpha=GRID_ALPHA, columns=3, titles=[f"{e.target.label} {e.target.prob:.0%}" for e in exps])
            st.image(grid, width="stretch")
            st.download_button("Download grid (PNG)", to_png_bytes(grid), file_name="top5.png", mime="image/png", key="explain_top5_png")
        except BackboneError as exc:
            components.show_error(exc)

with tab_models:
    others = st.multiselect("Backbones", runnable, default=runnable[:3], format_func=state.display_name, key="explain_grid_models")
    shared = st.toggle("Shared colour scale", value=True, key="explain_shared", help="One scale for all maps: weaker evidence looks weaker.")
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
            grid = render_grid(image, exps, normalize="joint" if shared else "each", alpha=GRID_ALPHA, titles=titles, show_image=True)
            st.image(grid, width="stretch")
            st.download_button("Download figure (PNG)", to_png_bytes(grid), file_name="backbones-explained.png", mime="image/png", key="explain_grid_png")

with tab_features:
    fl = st.selectbox("Layer", layers, index=layers.index(layer or default) if (layer or default) in layers else max(0, len(layers) - 1), key=f"explain_feat_layer_{option}") if layers else None
    if fl:
        try:
            with st.spinner("Reading activations…"):
                fm = caches.features(option, key, data, name, fl, 16)
        except BackboneError as exc:
            components.show_error(exc)
        else:
            st.caption(f"`{fl}` output: {' × '.join(map(str, fm.output_shape))} (C × H × W); the 16 channels with the highest mean activation.")
            st.image(render_feature_grid(fm), width="stretch")
            st.dataframe([c.to_dict() for c in fm.top], hide_index=True, key="explain_feat_table")
