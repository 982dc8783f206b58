"""Training runs: compare loss and accuracy curves of several runs (text logs, CSV, TensorBoard)."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError
from dashboard import actions, caches, components
from dashboard.i18n import t

st.title(t("training.title"))
st.caption(t("training.caption"))

uploads = st.file_uploader(t("training.upload"), accept_multiple_files=True, key="train_upload", max_upload_size=actions.LOG_UPLOAD_MB)
local, local_problems = caches.local_runs()
use_local = st.toggle(t("training.local", n=len(local)), value=bool(local), key="train_local", disabled=not local)
use_demo = st.toggle(t("training.demo"), value=not uploads and not local, key="train_seed")
files = [(f.name, f.getvalue()) for f in uploads or []]
runs, problems, notices = caches.training_runs(tuple(files)) if files else ([], [], [])
if use_local:
    runs, problems = [*local, *runs], [*local_problems, *problems]
if use_demo:
    runs = [*runs, *caches.demo_runs()]
for message in problems:
    st.error(components.md(message), icon=":material/error:")
for message in notices:
    st.warning(components.md(message), icon=":material/warning:")
if not runs:
    st.info(t("training.empty"))
    st.stop()

st.markdown(f"**{t('training.name_runs')}**")
named = []
cols = st.columns(3)
for i, run in enumerate(runs):
    # Keyed by the run, not only its place: after an upload, field 0 must not keep the old run 0's name.
    run_key = caches.digest(f"{run.source}\0{run.name}".encode())
    name = cols[i % 3].text_input(components.md(run.source), run.name, key=f"train_name_{i}_{run_key}")
    try:
        named.append(run.renamed(name) if name != run.name else run)
    except BackboneError as exc:
        components.show_error(exc)
        named.append(run)

chosen = st.multiselect(t("training.runs_to_plot"), [r.name for r in named], default=[r.name for r in named][:6], key="train_chosen")
shown = [r for r in named if r.name in chosen]

summary = pd.DataFrame([r.summary() for r in shown]) if shown else pd.DataFrame()
if not summary.empty:
    # The CSV keeps the field names of `python -m backbones logs --json`; only the table on screen is translated.
    headers = {
        "name": t("training.col.name"), "source": t("training.col.source"), "format": t("training.col.format"),
        "epochs": t("training.col.epochs"), "first_epoch": t("training.col.first_epoch"),
        "last_epoch": t("training.col.last_epoch"), "best_epoch": t("training.col.best_epoch"),
        "best_metric": t("training.col.best_metric"), "best_test_acc": t("training.col.best_test_acc"),
        "final_test_acc": t("training.col.final_test_acc"), "final_loss": t("training.col.final_loss"),
        "mean_epoch_time_s": t("training.col.mean_epoch_time_s"), "total_time_s": t("training.col.total_time_s"),
        "gap_at_best": t("training.col.gap_at_best"), "gap_at_last": t("training.col.gap_at_last"),
    }
    st.dataframe(summary.rename(columns=headers), hide_index=True, key="train_summary")
    st.download_button(t("training.download_csv"), summary.to_csv(index=False).encode(), file_name="training-runs.csv", mime="text/csv", key="train_csv")

charts = [
    ("loss", t("training.chart.loss"), t("training.axis.loss"), False),
    ("train_acc", t("training.chart.train_acc"), "%", True),
    ("test_acc", t("training.chart.test_acc"), "%", True),
    ("gap", t("training.chart.gap"), "%", True),
]
for field, title, y_title, percent in charts:
    fig = go.Figure()
    for r in shown:
        x, y = r.series(field, break_gaps=True)  # a log that skips epochs gets a gap, not a made-up line
        if any(v is not None for v in y):
            values = [None if v is None else (v * 100 if percent else v) for v in y]
            fig.add_scatter(x=list(x), y=values, mode="lines+markers", name=r.name, connectgaps=False)
    if fig.data:
        fig.update_layout(title=title, height=330, margin=dict(t=40), xaxis_title=t("training.axis.epoch"), yaxis_title=y_title, legend=dict(orientation="h", y=-0.25))
        components.plot(fig, key=f"train_{field}")
