"""Evaluate: accuracy of the selected backbones on your own labelled images."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError, CancelledError
from dashboard import actions, caches, components, state

st.title("Evaluate on your images")
roots = actions.dataset_roots()
st.caption(
    "A folder with one sub-folder per class, uploaded as a .zip"
    + (", or a folder / CSV of `path,label` rows in the server's data folders" if roots else "")
    + ". ImageNet models match folder names to ImageNet classes; your checkpoints use their own classes. "
    "CLI: `python -m backbones eval DATASET --model NAME --json` (DATASET: a folder, a .zip or a CSV)."
)

runnable = components.weights_gate(state.selected_models(), key="evaluate")
if not runnable:
    st.stop()

SAMPLE, UPLOAD, SERVER = "built-in sample", "upload a .zip", "a folder on the server"
source = st.radio(
    "Dataset", [SAMPLE, UPLOAD, *([SERVER] if roots else [])], horizontal=True, key="eval_source",
    help="The built-in sample: 15 real photos that ship with installed packages (military uniform, palace, daisy).",
)
c1, c2 = st.columns(2)
archive = c1.file_uploader("Dataset (.zip of class folders)", type=["zip"], key="eval_zip") if source == UPLOAD else None
# Server paths are off unless the administrator opened data folders (BACKBONES_DATA_ROOTS).
local = (
    c2.text_input("…or a folder / CSV in the server's data folders", key="eval_path", placeholder=f"{roots[0]}/animals")
    if source == SERVER
    else ""
)
c3, c4, c5 = st.columns(3)
chosen = c3.multiselect("Backbones", runnable, default=runnable[:2], format_func=state.display_name, key="eval_models")
batch_size = c4.selectbox("Batch size", [8, 16, 32], index=1, key="eval_batch")
limit = c5.number_input("At most this many images (0 = all)", 0, 100000, 0, key="eval_limit")

dataset = None
try:
    if source == SAMPLE:
        dataset = caches.sample_dataset()
    elif archive is not None:
        dataset = caches.uploaded_dataset(archive.getvalue(), archive.name)
    elif local.strip():
        dataset = actions.server_dataset(local)
except BackboneError as exc:
    components.show_error(exc)

go_clicked = st.button("Evaluate", type="primary", key="eval_go", disabled=not (dataset and chosen))
if go_clicked:
    results = []
    bar = st.progress(0.0, text="Starting…")
    for i, option in enumerate(chosen):
        def report(done, total, message, i=i, option=option):
            bar.progress(min(1.0, (i + done / max(total, 1)) / len(chosen)), text=f"{state.display_name(option)}: {message}")

        try:
            results.append((option, actions.run_evaluation(option, dataset, batch_size=batch_size, limit=limit or None, progress=report)))
        except CancelledError as exc:
            st.warning(str(exc))
        except BackboneError as exc:
            components.show_error(exc, prefix=f"{state.display_name(option)}: ")
    bar.progress(1.0, text="Done; results saved and shown on Compare as 'accuracy on <dataset>'.")
    state.set_eval_results(results)

shown = state.eval_results()
if not shown and source == SAMPLE and chosen:
    # A first visit shows a whole result at once: the first backbone on the built-in sample (not stored).
    try:
        shown = [(chosen[0], caches.sample_evaluation(chosen[0], caches.model_key(chosen[0])))]
    except BackboneError as exc:
        components.show_error(exc)
for option, r in shown:
    st.subheader(components.md(f"{state.display_name(option)} on {r.dataset}"))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Top-1", f"{r.top1:.1%}", f"error {r.top1_error:.1%}", delta_color="off")
    m2.metric("Top-5", f"{r.top5:.1%}", f"error {1 - r.top5:.1%}", delta_color="off")
    m3.metric("Images", r.n, f"{r.skipped} skipped, {r.excluded} excluded", delta_color="off")
    m4.metric("Images / s", f"{r.images_per_second:.1f}")
    for note in r.notes:
        st.caption(components.md(note))
    for u in r.unmatched:
        st.caption(components.md(f"Unmatched class {u.label} ({u.images} images excluded): {u.note}"))
    left, right = st.columns(2)
    with left:
        st.dataframe(pd.DataFrame([{"class": c, "top-1": a} for c, a in r.per_class]), hide_index=True, key=f"eval_pc_{option}")
    with right:
        fig = go.Figure(go.Heatmap(z=[list(row) for row in r.confusion], x=list(r.confusion_columns), y=list(r.labels), colorscale="Blues", text=[list(row) for row in r.confusion], texttemplate="%{text}"))
        fig.update_layout(title="Confusion (rows: true class, columns: top-1)", height=360, margin=dict(t=40), yaxis=dict(autorange="reversed"))
        components.plot(fig, key=f"eval_conf_{option}")
    if r.misclassified:
        with st.expander(f"{len(r.misclassified)} misclassified image(s)"):
            st.dataframe(
                pd.DataFrame([{**m.to_dict(), "path": r.relative_path(m.path)} for m in r.misclassified]),
                hide_index=True,
                key=f"eval_mis_{option}",
            )
    if r.skipped_files:
        with st.expander(f"{len(r.skipped_files)} unreadable file(s) skipped"):
            for s in r.skipped_files:
                st.caption(components.md(f"{r.relative_path(s.path)}: {s.reason}"))
