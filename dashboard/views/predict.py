"""Predict: top-5 from several backbones side by side, and the crop each model actually saw."""

import streamlit as st

from backbones.errors import BackboneError
from dashboard import caches, components, state

st.title("Predict")
st.caption(
    "Upload photos (or pick a sample) and compare each backbone's top-5 ImageNet classes. "
    "CLI: `python -m backbones predict IMG --model NAME --topk 5 --json`."
)

inputs = components.image_inputs("predict")
images = components.decoded_images(inputs)
models = state.selected_models()
topk = st.slider("Classes per model (top-k)", 1, 10, 5, key="predict_topk")

if not models:
    st.info("Pick one or more backbones in the sidebar.")
    st.stop()
if not images:
    st.info("Upload an image or choose a sample photo to see predictions.")
    st.stop()

# Every selected backbone is shown: those without weights here with a Download button.
runnable = [(o, "") for o in components.weights_gate(models, key="predict")]
if not runnable:
    st.stop()

for name, data, image, info in images:
    st.subheader(components.md(name))
    st.caption(f"{info.format}, {info.width}×{info.height}, mode {info.mode}" + (f", {info.frames} frames (first used)" if info.frames > 1 else ""))
    columns = st.columns(min(len(runnable), 3) + 1)
    with columns[0]:
        st.image(image, caption="your image", width="stretch")
    for i, (option, _) in enumerate(runnable):
        col = columns[1 + i % (len(columns) - 1)]
        with col:
            try:
                with st.spinner(f"Running {state.display_name(option)}…"):
                    topk_rows = caches.predictions(option, caches.model_key(option), caches.digest(data), data, name, topk)
                    loaded = caches.loaded_model(option)
            except BackboneError as exc:
                components.show_error(exc, prefix=f"{state.display_name(option)}: ")
                continue
            components.plot(
                components.topk_chart(topk_rows, title=state.display_name(option)),
                key=f"topk_{name}_{option}",
            )
            prep = loaded.preprocessing
            with st.expander("What the model saw"):
                st.image(prep.resized_crop(image), caption=f"{prep.crop_size}px crop (resize {prep.resize_size}, {prep.interpolation})")
                st.caption(components.md(f"mean {prep.mean}, std {prep.std}; weights: {loaded.describe()}"))


def pack_bytes() -> bytes:
    """The slide pack of this page: one figure per photo with every backbone's top-k, the numbers, the commands."""
    from viz.pack import build_pack, render_topk_figure

    figures, tables = {}, {}
    for name, data, image, _ in images:
        rows = {}
        for option, _ in runnable:
            try:
                rows[state.display_name(option)] = caches.predictions(option, caches.model_key(option), caches.digest(data), data, name, topk)
            except BackboneError:
                continue
        figures[f"top{topk}-{name}"] = render_topk_figure(image, rows, title=name)
        tables[f"top{topk}-{name}"] = [{"backbone": m, **r} for m, rs in rows.items() for r in rs]
    models = [state.store_name(o) for o, _ in runnable]
    return build_pack(
        figures,
        tables,
        {"models": models, "images": [n for n, *_ in images], "topk": topk, "device": state.device()},
        [f"python -m backbones predict IMG --model {m} --topk {topk} --json" for m in models],
    )


st.download_button("Download slide pack (zip: 1920 px figures, CSV, settings, commands)", pack_bytes,
                   file_name="backbone-lens-predict.zip", mime="application/zip", key="predict_pack")
