"""Evaluate: accuracy of the selected backbones on your own labelled images."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError, CancelledError
from dashboard import actions, caches, components, state
from dashboard.i18n import t

st.title(t("evaluate.title"))
roots = actions.dataset_roots()
st.caption(t("evaluate.caption", server=t("evaluate.caption_server") if roots else ""))

runnable = components.weights_gate(state.selected_models(), key="evaluate")
if not runnable:
    st.stop()

SAMPLE, UPLOAD, SERVER = "sample", "upload", "server"  # the radio's values; their labels are translated
SOURCE_LABELS = {SAMPLE: t("evaluate.source.sample"), UPLOAD: t("evaluate.source.upload"), SERVER: t("evaluate.source.server")}
source = st.radio(
    t("evaluate.dataset"), [SAMPLE, UPLOAD, *([SERVER] if roots else [])], horizontal=True, key="eval_source",
    format_func=SOURCE_LABELS.get, help=t("evaluate.dataset_help"),
)
c1, c2 = st.columns(2)
archive = c1.file_uploader(t("evaluate.zip"), type=["zip"], key="eval_zip") if source == UPLOAD else None
# Server paths are off unless the administrator opened data folders (BACKBONES_DATA_ROOTS).
local = (
    c2.text_input(t("evaluate.server_path"), key="eval_path", placeholder=f"{roots[0]}/animals")
    if source == SERVER
    else ""
)
c3, c4, c5 = st.columns(3)
chosen = c3.multiselect(t("evaluate.backbones"), runnable, default=runnable[:2], format_func=state.display_name, key="eval_models")
batch_size = c4.selectbox(t("evaluate.batch_size"), [8, 16, 32], index=1, key="eval_batch")
limit = c5.number_input(t("evaluate.limit"), 0, 100000, 0, key="eval_limit")

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

go_clicked = st.button(t("evaluate.go"), type="primary", key="eval_go", disabled=not (dataset and chosen))
if go_clicked:
    results = []
    bar = st.progress(0.0, text=t("evaluate.starting"))
    for i, option in enumerate(chosen):
        def report(done, total, message, i=i, option=option):
            bar.progress(min(1.0, (i + done / max(total, 1)) / len(chosen)), text=f"{state.display_name(option)}: {message}")

        try:
            results.append((option, actions.run_evaluation(option, dataset, batch_size=batch_size, limit=limit or None, progress=report)))
        except CancelledError as exc:
            st.warning(str(exc))
        except BackboneError as exc:
            components.show_error(exc, prefix=f"{state.display_name(option)}: ")
    bar.progress(1.0, text=t("evaluate.done"))
    state.set_eval_results(results)

shown = state.eval_results()
if not shown and source == SAMPLE and chosen:
    # A first visit shows a whole result at once: the first backbone on the built-in sample (not stored).
    try:
        shown = [(chosen[0], caches.sample_evaluation(chosen[0], caches.model_key(chosen[0])))]
    except BackboneError as exc:
        components.show_error(exc)
for option, r in shown:
    st.subheader(components.md(t("evaluate.result_title", model=state.display_name(option), dataset=r.dataset)))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(t("evaluate.top1"), f"{r.top1:.1%}", t("evaluate.error_rate", value=r.top1_error), delta_color="off")
    m2.metric(t("evaluate.top5"), f"{r.top5:.1%}", t("evaluate.error_rate", value=1 - r.top5), delta_color="off")
    m3.metric(t("evaluate.images"), r.n, t("evaluate.skipped_excluded", skipped=r.skipped, excluded=r.excluded),
              delta_color="off")
    m4.metric(t("evaluate.images_per_second"), f"{r.images_per_second:.1f}")
    for note in r.notes:
        st.caption(components.md(note))
    for u in r.unmatched:
        st.caption(components.md(t("evaluate.unmatched", label=u.label, n=u.images, note=u.note)))
    left, right = st.columns(2)
    with left:
        per_class = pd.DataFrame(list(r.per_class), columns=[t("evaluate.col.class"), t("evaluate.col.top1")])
        st.dataframe(per_class, hide_index=True, key=f"eval_pc_{option}")
    with right:
        columns = list(r.confusion_columns)
        if len(columns) > len(r.labels):  # the last column counts predictions outside the dataset's classes
            columns[-1] = t("evaluate.confusion_other")
        fig = go.Figure(go.Heatmap(z=[list(row) for row in r.confusion], x=columns, y=list(r.labels), colorscale="Blues", text=[list(row) for row in r.confusion], texttemplate="%{text}"))
        fig.update_layout(title=t("evaluate.confusion"), height=360, margin=dict(t=40), yaxis=dict(autorange="reversed"))
        components.plot(fig, key=f"eval_conf_{option}")
    if r.misclassified:
        with st.expander(t("evaluate.misclassified", n=len(r.misclassified))):
            headers = {"path": t("evaluate.col.path"), "label": t("evaluate.col.label"),
                       "predicted": t("evaluate.col.predicted"), "in_top5": t("evaluate.col.in_top5"),
                       "top5": t("evaluate.col.top5")}
            st.dataframe(
                pd.DataFrame([{**m.to_dict(), "path": r.relative_path(m.path)} for m in r.misclassified]).rename(columns=headers),
                hide_index=True,
                key=f"eval_mis_{option}",
            )
    if r.skipped_files:
        with st.expander(t("evaluate.unreadable", n=len(r.skipped_files))):
            for s in r.skipped_files:
                st.caption(components.md(f"{r.relative_path(s.path)}: {s.reason}"))
