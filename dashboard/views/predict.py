"""Predict: top-5 from several backbones side by side, and the crop each model actually saw."""

import streamlit as st

from backbones.errors import BackboneError
from dashboard import caches, components, state
from dashboard.i18n import t

st.title(t("predict.title"))
st.caption(t("predict.caption"))

inputs = components.image_inputs("predict")
images = components.decoded_images(inputs)
models = state.selected_models()
topk = st.slider(t("predict.topk"), 1, 10, 5, key="predict_topk")

if not models:
    st.info(t("predict.pick"))
    st.stop()
if not images:
    st.info(t("predict.no_image"))
    st.stop()

# Every selected backbone is shown: those without weights here with a Download button.
runnable = [(o, "") for o in components.weights_gate(models, key="predict")]
if not runnable:
    st.stop()

for name, data, image, info in images:
    st.subheader(components.md(name))
    st.caption(t("predict.image_info", format=info.format, width=info.width, height=info.height, mode=info.mode)
               + (t("predict.frames", n=info.frames) if info.frames > 1 else ""))
    columns = st.columns(min(len(runnable), 3) + 1)
    with columns[0]:
        st.image(image, caption=t("predict.your_image"), width="stretch")
    for i, (option, _) in enumerate(runnable):
        col = columns[1 + i % (len(columns) - 1)]
        with col:
            try:
                with st.spinner(t("predict.running", model=state.display_name(option))):
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
            with st.expander(t("predict.model_saw")):
                st.image(prep.resized_crop(image), caption=t("predict.crop", crop=prep.crop_size, resize=prep.resize_size,
                                                             interpolation=prep.interpolation))
                st.caption(components.md(t("predict.preprocessing", mean=prep.mean, std=prep.std, weights=loaded.describe())))


def pack_bytes() -> bytes:
    """The slide pack of this page: one figure per photo with every backbone's top-k, the numbers, the commands."""
    from viz.pack import build_pack, predict_commands, render_topk_figure

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
        predict_commands([n for n, *_ in images], [state.model_ref(o) for o, _ in runnable], topk=topk),
    )


st.download_button(t("predict.pack"), pack_bytes,
                   file_name="backbone-lens-predict.zip", mime="application/zip", key="predict_pack")
