"""Transfer: which backbone for MY data — probes and LogME on the user's labelled images, then the notes' fine-tune."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError, CancelledError
from dashboard import actions, caches, components, state
from dashboard.i18n import t

SAMPLE, UPLOAD, SERVER = "sample", "upload", "server"  # the radio's values; their labels are translated
PROBES = ("linear", "knn", "logme")
X_AXES = ("latency_ms", "macs", "feature_dim")
SCORES = ("linear", "knn", "logme")


def pick_dataset(roots):
    """The dataset radio and its inputs; returns the Dataset or None (errors shown)."""
    labels = {SAMPLE: t("transfer.source.sample"), UPLOAD: t("transfer.source.upload"), SERVER: t("transfer.source.server")}
    source = st.radio(t("transfer.dataset"), [SAMPLE, UPLOAD, *([SERVER] if roots else [])], horizontal=True,
                      key="tr_source", format_func=labels.get, help=t("transfer.dataset_help"))
    try:
        if source == SAMPLE:
            return source, caches.transfer_sample()
        if source == UPLOAD:
            archive = st.file_uploader(t("transfer.zip"), type=["zip"], key="tr_zip")
            return source, (caches.uploaded_dataset(archive.getvalue(), archive.name) if archive is not None else None)
        path = st.text_input(t("transfer.server_path"), key="tr_path", placeholder=f"{roots[0]}/flowers")
        return source, (actions.server_dataset(path) if path.strip() else None)
    except BackboneError as exc:
        components.show_error(exc)
        return source, None


def option_of(row) -> str:
    """The picker option a row was ranked from: a checkpoint's row is named by its label (``custom:<label>``)."""
    return f"{state.CUSTOM_PREFIX}{row.model}" if row.checkpoint else row.model


def score_label(name: str) -> str:
    return t(f"transfer.score.{name}")


def report_table(report) -> pd.DataFrame:
    rows = []
    for r in report.rows:
        lin, knn = r.linear, r.knn
        rows.append({
            t("transfer.col.model"): state.display_name(option_of(r)),
            t("transfer.col.weights"): r.weights,
            t("transfer.col.dim"): r.feature_dim,
            t("transfer.col.linear"): None if lin is None else 100 * lin.top1,
            t("transfer.col.ci"): None if lin is None else f"{100 * lin.top1_ci[0]:.1f}–{100 * lin.top1_ci[1]:.1f}",
            t("transfer.col.top5"): None if lin is None or lin.top5 is None else 100 * lin.top5,
            t("transfer.col.mean_class"): None if lin is None else 100 * lin.mean_class,
            t("transfer.col.knn"): None if knn is None else 100 * knn.top1,
            t("transfer.col.k"): None if knn is None else knn.k,
            t("transfer.col.logme"): r.logme,
            t("transfer.col.imagenet"): r.imagenet_top1,
            t("transfer.col.latency"): r.latency_ms,
            t("transfer.col.speed"): r.extract_images_per_s,
            t("transfer.col.cached"): t("transfer.yes") if r.cached else t("transfer.no"),
        })
    return pd.DataFrame(rows)


def pareto_chart(report, x: str, y: str) -> go.Figure:
    front = set(report.pareto_front(x, y))
    names = [state.display_name(option_of(r)) for r in report.rows]
    xs = [getattr(r, x, None) for r in report.rows]
    ys = [report.score(r, y) for r in report.rows]
    scale = 1 if y == "logme" else 100
    fig = go.Figure()
    shown = [(n, a, b) for n, a, b in zip(names, xs, ys) if a is not None and b is not None]
    fig.add_trace(go.Scatter(x=[a for _, a, _ in shown], y=[b * scale for _, _, b in shown], text=[n for n, _, _ in shown],
                             mode="markers+text", textposition="top center", name=t("transfer.chart.backbones"),
                             marker=dict(size=12, color="#2563eb")))
    on_front = sorted((xs[i], ys[i] * scale) for i in front)
    if len(on_front) > 1:
        fig.add_trace(go.Scatter(x=[a for a, _ in on_front], y=[b for _, b in on_front], mode="lines",
                                 name=t("transfer.chart.front"), line=dict(dash="dot", color="#dc2626")))
    missing = [n for n, a, b in zip(names, xs, ys) if a is None or b is None]
    if missing:  # said under the chart: a title that long is cut off
        fig.add_annotation(text=t("transfer.chart.left_out", names=", ".join(missing)), xref="paper", yref="paper",
                           x=0, y=-0.22, showarrow=False, xanchor="left", font=dict(size=11))
    fig.update_layout(title=t("transfer.chart.pareto_title", y=score_label(y), x=t(f"transfer.x.{x}")), xaxis_title=t(f"transfer.x.{x}"), yaxis_title=score_label(y), height=420,
                      xaxis_type="log" if x in ("latency_ms", "macs") else "linear")
    return fig


def imagenet_chart(report, y: str) -> go.Figure:
    pairs = [(state.display_name(option_of(r)), r.imagenet_top1, report.score(r, y)) for r in report.rows]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    scale = 1 if y == "logme" else 100
    fig = go.Figure(go.Scatter(x=[p[1] for p in pairs], y=[p[2] * scale for p in pairs], text=[p[0] for p in pairs],
                               mode="markers+text", textposition="top center", marker=dict(size=12, color="#059669")))
    rho = report.rank_correlation(y)
    rho_text = t("transfer.chart.rho", rho=f"{rho:+.2f}") if rho is not None else t("transfer.chart.rho_na")
    fig.add_annotation(text=rho_text, xref="paper", yref="paper", x=0, y=1.02, showarrow=False, xanchor="left",
                       yanchor="bottom", font=dict(size=12))
    fig.update_layout(title=t("transfer.chart.imagenet_title", y=score_label(y)),
                      xaxis_title=t("transfer.chart.imagenet_axis"), yaxis_title=score_label(y), height=420)
    return fig


def per_class_chart(row) -> go.Figure:
    items = sorted(row.per_class().items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[100 * v for _, v in items], y=[k for k, _ in items], orientation="h", marker_color="#2563eb"))
    fig.update_layout(title=t("transfer.chart.per_class", model=state.display_name(option_of(row))),
                      xaxis_title=t("transfer.chart.per_class_axis"), height=max(260, 28 * len(items) + 80))
    return fig


def history_chart(history) -> go.Figure:
    epochs = list(range(1, len(history) + 1))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=epochs, y=[h.loss for h in history], name=t("transfer.ft.loss"), mode="lines+markers"))
    fig.add_trace(go.Scatter(x=epochs, y=[h.train_acc for h in history], name=t("transfer.ft.train_acc"),
                             mode="lines+markers", yaxis="y2"))
    fig.add_trace(go.Scatter(x=epochs, y=[h.val_acc for h in history], name=t("transfer.ft.val_acc"),
                             mode="lines+markers", yaxis="y2"))
    fig.update_layout(title=t("transfer.ft.curves"), xaxis_title=t("transfer.ft.epoch"), height=360,
                      yaxis=dict(title=t("transfer.ft.loss")),
                      yaxis2=dict(title=t("transfer.ft.accuracy"), overlaying="y", side="right", range=[0, 1]))
    return fig


def rank_section(dataset, chosen, probes, batch_size):
    if st.button(t("transfer.go"), type="primary", key="tr_go", disabled=not (dataset and chosen and probes)):
        bar = st.progress(0.0, text=t("transfer.starting"))

        def report(done, total, message):
            bar.progress(min(1.0, done / max(total, 1)), text=components.md(message))

        try:
            state.set_transfer_report(actions.run_transfer(dataset, chosen, probes=probes, batch_size=batch_size,
                                                           progress=report))
            bar.progress(1.0, text=t("transfer.done"))
        except CancelledError as exc:
            st.warning(str(exc))
        except BackboneError as exc:
            components.show_error(exc)


def finetune_section(report, dataset):
    st.subheader(t("transfer.ft.title"))
    st.caption(t("transfer.ft.caption"))
    options = [option_of(r) for r in report.rows if r.trained]
    if not options:
        st.info(t("transfer.ft.none"))
        return
    best = report.best("linear")
    best_option = option_of(best) if best else None
    c1, c2, c3, c4 = st.columns(4)
    model = c1.selectbox(t("transfer.ft.model"), options, index=options.index(best_option) if best_option in options else 0,
                         key="ft_model", format_func=state.display_name)
    stage = c2.selectbox(t("transfer.ft.stage"), ["head", "last-stage"], key="ft_stage",
                         format_func=lambda s: t(f"transfer.ft.stage.{s}"))
    epochs = c3.number_input(t("transfer.ft.epochs"), 1, 100, 5, key="ft_epochs")
    lr = c4.select_slider(t("transfer.ft.lr"), [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=1e-3, key="ft_lr")
    go_clicked = st.button(t("transfer.ft.go"), key="ft_go", disabled=dataset is None)
    if go_clicked:
        st.button(t("transfer.ft.cancel"), key="ft_cancel")  # a click reruns the page: training stops, the best is kept
        status = st.empty()
        curves = st.empty()
        history = []

        def on_epoch(done, total, record):
            history.append(record)
            status.caption(t("transfer.ft.progress", done=done, total=total, stage=record.stage, loss=record.loss,
                             acc=record.val_acc))
            curves.plotly_chart(history_chart(history), key=f"ft_live_{len(history)}")

        try:
            result = actions.run_finetune(dataset, model, stage=stage, epochs=int(epochs), lr=float(lr), progress=on_epoch)
        except BackboneError as exc:
            components.show_error(exc)
        else:
            state.set_finetune_result(result)
    result = state.finetune_result()
    if result is not None:
        line = t("transfer.ft.result", model=state.display_name(result.model), stage=result.stage,
                 val=result.best_val_acc or 0.0, test=result.test_acc if result.test_acc is not None else float("nan"),
                 epoch=result.best_epoch or 0, stopped=result.stopped)
        (st.success if result.checkpoint else st.warning)(components.md(line))
        if result.message:
            st.caption(components.md(result.message))
        if result.history:
            components.plot(history_chart(result.history), key="ft_curves")
        if result.checkpoint:
            st.caption(t("transfer.ft.saved"))


def probe_buttons(report, dataset_name):
    trained = [r for r in report.rows if r.trained and r.linear is not None]
    if not trained:
        return
    st.markdown(f"**{t('transfer.save_title')}**")
    cols = st.columns(min(len(trained), 4))
    for i, row in enumerate(trained):
        if cols[i % len(cols)].button(t("transfer.save", model=state.display_name(option_of(row))), key=f"tr_save_{i}"):
            try:
                label = actions.save_probe_checkpoint(row, dataset_name)
            except BackboneError as exc:
                components.show_error(exc)
            else:
                st.success(components.md(t("transfer.saved", label=label)))


def page() -> None:
    st.title(t("transfer.title"))
    roots = actions.dataset_roots()
    st.caption(t("transfer.caption"))
    runnable = components.weights_gate(state.selected_models(), key="transfer")
    if not runnable:
        st.stop()
    source, dataset = pick_dataset(roots)
    c1, c2, c3 = st.columns([3, 2, 1])
    chosen = c1.multiselect(t("transfer.backbones"), runnable, default=runnable[:3], format_func=state.display_name,
                            key="tr_models")
    probes = c2.multiselect(t("transfer.probes"), list(PROBES), default=list(PROBES), key="tr_probes",
                            format_func=score_label)
    batch_size = c3.selectbox(t("transfer.batch_size"), [16, 32, 64], index=1, key="tr_batch")
    if dataset is not None:
        st.caption(components.md(t("transfer.dataset_line", name=dataset.name, n=len(dataset.samples),
                                   classes=len(dataset.classes))))
    rank_section(dataset, chosen, probes, batch_size)

    report = state.transfer_report()
    if report is None and source == SAMPLE and chosen:
        # A first visit shows a whole result: the selected backbones on the built-in sample (features cached on disk).
        try:
            report = caches.sample_transfer(tuple(chosen), tuple(caches.model_key(o) for o in chosen))
        except BackboneError as exc:
            components.show_error(exc)
    if report is None:
        st.info(t("transfer.empty"))
        return

    st.subheader(components.md(t("transfer.result_title", dataset=report.dataset)))
    st.caption(t("transfer.splits", train=report.splits.get("train", 0), val=report.splits.get("val", 0),
                 test=report.splits.get("test", 0), classes=len(report.classes), skipped=len(report.skipped)))
    table = report_table(report)
    components.table(table, key="tr_table")
    st.caption(t("transfer.table_note"))
    c1, c2 = st.columns(2)
    y = c1.selectbox(t("transfer.y"), [s for s in SCORES if s in report.probes], key="tr_y", format_func=score_label)
    # Latency exists only once Compare has measured it here: until then the cost axis opens on MACs.
    axes = list(X_AXES) if any(r.latency_ms is not None for r in report.rows) else ["macs", "feature_dim", "latency_ms"]
    x = c2.selectbox(t("transfer.x"), axes, key="tr_x", format_func=lambda v: t(f"transfer.x.{v}"))
    left, right = st.columns(2)
    with left:
        components.plot(pareto_chart(report, x, y), key="tr_pareto")
    with right:
        components.plot(imagenet_chart(report, y), key="tr_imagenet")
    best = report.best("linear")
    if best is not None:
        components.plot(per_class_chart(best), key="tr_per_class")
    probe_buttons(report, report.dataset)
    c1, c2 = st.columns(2)
    c1.download_button(t("transfer.csv"), table.to_csv(index=False).encode(), file_name="transfer.csv",
                       mime="text/csv", key="tr_csv")
    c2.download_button(t("transfer.pack"), lambda: actions.transfer_pack(report), file_name="backbone-lens-transfer.zip", mime="application/zip",
                       key="tr_pack")
    finetune_section(report, dataset)


page()
