"""Training runs: compare loss and accuracy curves of several runs (text logs, CSV, TensorBoard)."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError
from dashboard import actions, caches, components

st.title("Training runs")
st.caption(
    "Upload epoch logs (`epoch 83, loss 0.1116, train accuracy 0.970, test accuracy 0.822, use time 62.638`), "
    "CSV with epoch/loss/accuracy columns, or TensorBoard event files. CLI: `python -m backbones logs FILE… --json`."
)

uploads = st.file_uploader("Training logs", accept_multiple_files=True, key="train_upload", max_upload_size=actions.LOG_UPLOAD_MB)
use_demo = st.toggle("Include the demo runs (VGG19, NIN, GoogLeNet, ResNet on the seed notes' animal dataset)", value=not uploads, key="train_seed")
files = [(f.name, f.getvalue()) for f in uploads or []]
runs, problems = caches.training_runs(tuple(files)) if files else ([], [])
if use_demo:
    runs = [*runs, *caches.demo_runs()]
for message in problems:
    st.error(components.md(message), icon=":material/error:")
if not runs:
    st.info("Upload one or more training logs, or include the demo runs.")
    st.stop()

st.markdown("**Name the runs**")
named = []
cols = st.columns(3)
for i, run in enumerate(runs):
    name = cols[i % 3].text_input(components.md(run.source), run.name, key=f"train_name_{i}")
    try:
        named.append(run.renamed(name) if name != run.name else run)
    except BackboneError as exc:
        components.show_error(exc)
        named.append(run)

chosen = st.multiselect("Runs to plot", [r.name for r in named], default=[r.name for r in named][:6], key="train_chosen")
shown = [r for r in named if r.name in chosen]

summary = pd.DataFrame([r.summary() for r in shown]) if shown else pd.DataFrame()
if not summary.empty:
    st.dataframe(summary, hide_index=True, key="train_summary")
    st.download_button("Download summary (CSV)", summary.to_csv(index=False).encode(), file_name="training-runs.csv", mime="text/csv", key="train_csv")

for field, title, percent in [("loss", "Loss", False), ("train_acc", "Train accuracy", True), ("test_acc", "Test accuracy", True), ("gap", "Overfitting gap (train − test accuracy)", True)]:
    fig = go.Figure()
    for r in shown:
        x, y = r.series(field, break_gaps=True)  # a log that skips epochs gets a gap, not a made-up line
        if any(v is not None for v in y):
            values = [None if v is None else (v * 100 if percent else v) for v in y]
            fig.add_scatter(x=list(x), y=values, mode="lines+markers", name=r.name, connectgaps=False)
    if fig.data:
        fig.update_layout(title=title, height=330, margin=dict(t=40), xaxis_title="epoch", yaxis_title="%" if percent else field, legend=dict(orientation="h", y=-0.25))
        components.plot(fig, key=f"train_{field}")
