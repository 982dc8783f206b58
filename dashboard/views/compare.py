"""Compare: published accuracy beside latency measured here, parameters, MACs and file size."""

import os

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backbones.errors import BackboneError, CancelledError
from backbones.results.comparison import X_AXES
from backbones.results.pareto import pareto_front
from dashboard import actions, caches, components, state
from dashboard.i18n import t

# The table's columns: English names stay the data's (CSV, slide pack, the code below); only the shown
# table, the charts and the metric picker read them in the session's language.
COLUMNS = {
    "backbone": "compare.col_backbone",
    "name": "compare.col_name",
    "series": "compare.col_series",
    "top-1 (%)": "compare.col_top1",
    "top-5 (%)": "compare.col_top5",
    "latency median (ms)": "compare.col_latency",
    "p10 (ms)": "compare.col_p10",
    "p90 (ms)": "compare.col_p90",
    "images/s": "compare.col_throughput",
    "params (M)": "compare.col_params",
    "GMACs": "compare.col_gmacs",
    "published GMACs": "compare.col_published_gmacs",
    "size (MiB)": "compare.col_size",
    "device": "compare.col_device",
    "batch": "compare.col_batch",
    "threads": "compare.col_threads",
    "measured at (UTC)": "compare.col_measured_at",
    "accuracy source": "compare.col_source",
}
TOP1_ON = ("top-1 on ", " (%)")  # one column per dataset the user evaluated on


def column_label(column: str) -> str:
    """A table column's header in this session's language."""
    if column in COLUMNS:
        return t(COLUMNS[column])
    if column.startswith(TOP1_ON[0]) and column.endswith(TOP1_ON[1]):
        return t("compare.col_top1_on", dataset=column[len(TOP1_ON[0]) : -len(TOP1_ON[1])])
    return column


def series_label(series: str) -> str:
    """A measurement series (``measured here``, ``measured on <machine>``, ``published only``) for legends."""
    machine = "measured on "
    if series == "measured here":
        return t("compare.series_here")
    if series == "published only":
        return t("compare.series_published")
    if series.startswith(machine):
        return t("compare.series_machine", machine=series[len(machine) :])
    return series


st.title(t("compare.title"))
st.caption(t("compare.caption"))

scope_key = "cmp_scope"
state.sync_compare_scope(scope_key)
st.segmented_control(
    t("compare.scope"), list(state.COMPARE_SCOPES), key=scope_key, on_change=state.store_compare_scope, args=(scope_key,),
    format_func=lambda v: t(f"compare.scope_{v}", n=len(state.selected_models())), help=t("compare.scope_help"),
)
models = state.compare_models()
if not models:
    st.info(t("compare.pick"))
    st.stop()

# The measurement controls sit above the table but are drawn after it: listing the devices and planning a
# sweep import torch, and the published figures below need neither (the first paint does not wait for them).
controls = st.container(border=True)
max_threads = os.cpu_count() or 1
device, batch_size, threads = state.compare_settings(min(2, max_threads))
threads_filter = int(threads) if device == "cpu" else None
try:
    rows = caches.comparison(tuple(models), device=device, batch_size=batch_size, threads=threads_filter)
except BackboneError as exc:
    components.show_error(exc)
    st.stop()

table = pd.DataFrame(
    [
        {
            "backbone": r["display_name"],
            "name": r["model"],
            "series": r["series"],
            "top-1 (%)": r["published_top1"],
            "top-5 (%)": r["published_top5"],
            **{f"top-1 on {ds} (%)": acc * 100 for ds, acc in r["accuracy_on"].items()},
            "latency median (ms)": r["latency_ms"],
            "p10 (ms)": r["p10_ms"],
            "p90 (ms)": r["p90_ms"],
            "images/s": r["throughput_ips"],
            "params (M)": r["params_m"],
            "GMACs": r["gmacs"],
            **({"published GMACs": r["published_gmacs"]} if any(x["published_gmacs"] for x in rows) else {}),
            "size (MiB)": r["size_mib"],
            "device": r["device_name"] or r["device"],
            "batch": r["batch_size"],
            "threads": r["threads"],
            "measured at (UTC)": r["measured_at"],
            "accuracy source": r["published_source"],
        }
        for r in rows
    ]
)
measured = table["latency median (ms)"].notna()
components.table(table.assign(series=table["series"].map(series_label)).rename(columns=column_label), key="cmp_table",
                 decimals={column_label("GMACs"): 3, column_label("published GMACs"): 3})
st.caption(t("compare.macs_note"))
if not measured.all():
    st.caption(t("compare.dash_note"))

components.send_before_torch()  # the table above is the first paint; the controls need torch
with controls:
    c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1, 1.4])
    device = c1.selectbox(t("compare.device"), caches.available_devices(), key=state.COMPARE_DEVICE, help=t("compare.device_help"))
    batch_size = c2.selectbox(t("compare.batch_size"), [1, 2, 4, 8, 16, 32, 64], key=state.COMPARE_BATCH)
    threads = c3.number_input(t("compare.threads"), 1, max_threads, min(2, max_threads), key=state.COMPARE_THREADS, disabled=device != "cpu")
    budget = c4.number_input(t("compare.budget"), 0.5, 10.0, 2.0, step=0.5, key="cmp_budget")
    c5.write("")
    try:
        plan, to_measure = actions.plan_benchmarks(
            models, device=device, batch_size=batch_size, budget_s=float(budget), threads=int(threads)
        )
    except BackboneError as exc:
        plan, to_measure = None, []
        components.show_error(exc)
    label = t("compare.measure", n=len(to_measure)) + (t("compare.measure_estimate", seconds=plan.total_s) if plan and to_measure else "")
    measure = c5.button(label, type="primary", key="cmp_measure", width="stretch", disabled=not to_measure)
    for name, why in plan.refused if plan else ():
        st.caption(components.md(t("compare.left_out", name=name, why=why)))
    done = state.pop_flash()  # set by the last Measure run, shown once after its rerun
    if done:
        st.success(done)
    if not measured.any():
        st.info(t(
            "compare.not_measured",
            device=device,
            batch=batch_size,
            threads=t("compare.not_measured_threads", n=int(threads)) if device == "cpu" else "",
            seconds=plan.total_s if plan else 0,
        ))

    if measure:
        progress = st.progress(0.0, text=t("compare.starting"))
        st.button(t("compare.stop"), key="cmp_stop", help=t("compare.stop_help"))

        def report(done: int, total: int, message: str) -> None:
            progress.progress(done / max(total, 1), text=f"{done}/{total} · {message}")

        try:
            # Skips become notices: the sidebar shows them once after the rerun below.
            actions.run_benchmarks(to_measure, on_skip=lambda name, why: state.push_notice(f"{name}: {why}"), device=device, batch_size=batch_size, threads=int(threads), budget_s=float(budget), progress=report)
        except CancelledError as exc:
            st.warning(str(exc))
        except BackboneError as exc:
            components.show_error(exc)
        else:
            progress.empty()  # the flash below says it once, after the rerun
            caches.comparison.clear()
            state.flash(t("compare.done"))
            st.rerun()  # the table above now shows what was measured

st.download_button(
    t("compare.csv"),
    table.to_csv(index=False).encode(),
    file_name="backbone-comparison.csv",
    mime="text/csv",
    key="cmp_csv",
)

@st.fragment
def scatter(rows: list[dict]) -> None:
    """Accuracy against a cost axis; switching the axis reruns only this chart."""
    x_choice = st.radio(
        t("compare.x_axis"),
        list(X_AXES),
        format_func=lambda k: t(f"compare.x_axis_{k}"),
        horizontal=True,
        index=list(X_AXES).index("macs"),  # drawable before anything is measured
        key="cmp_x",
    )
    attr = X_AXES[x_choice][0]
    points = [r for r in rows if r.get(attr) is not None and r["published_top1"] is not None]
    if not points:
        st.info(t("compare.nothing_to_plot_latency" if x_choice == "latency" else "compare.nothing_to_plot"))
    else:
        fig = go.Figure()
        max_params = max((r["params_m"] or 0) for r in points) or 1

        def bubble(r) -> float:
            return 12 + 50 * ((r["params_m"] or 0) / max_params) ** 0.5

        # Labels sit above each bubble, clear of it however large it is.
        for r in points:
            fig.add_annotation(
                x=r[attr], y=r["published_top1"], text=components.plain_label(r["display_name"]), showarrow=False,
                yshift=bubble(r) / 2 + 9, font=dict(size=13), xref="x", yref="y",
            )
        for series in sorted({r["series"] for r in points}, key=lambda s: s != "measured here"):
            pts = [r for r in points if r["series"] == series]
            fig.add_trace(
                go.Scatter(
                    x=[r[attr] for r in pts],
                    y=[r["published_top1"] for r in pts],
                    mode="markers",
                    name=series_label(series),
                    text=[r["display_name"] for r in pts],
                    marker=dict(size=[bubble(r) for r in pts], opacity=0.65, line=dict(width=1)),
                    customdata=[[r["params_m"] or 0] for r in pts],
                    hovertemplate="%{text}<br>x=%{x:.3g}<br>top-1=%{y:.2f}%<br>" + t("compare.hover_params")
                    + "=%{customdata[0]:.2f}M<extra>" + series_label(series) + "</extra>",
                )
            )
            front = pareto_front([(r[attr], r["published_top1"]) for r in pts])
            if len(front) > 1:
                fig.add_trace(
                    go.Scatter(
                        x=[pts[i][attr] for i in front],
                        y=[pts[i]["published_top1"] for i in front],
                        mode="lines",
                        line=dict(dash="dash", width=2),
                        name=t("compare.pareto", series=series_label(series)),
                        hoverinfo="skip",
                    )
                )
        fig.update_layout(
            height=520,
            xaxis_title=t(f"compare.x_axis_{x_choice}"),
            yaxis_title=t("compare.axis_top1"),
            legend=dict(orientation="h", y=-0.15),
            margin=dict(t=30),
            font=dict(size=14),
        )
        fig.update_xaxes(**components.readable_axis([r[attr] for r in points]))
        if len(points) > 1:  # annotations do not widen the axis: room for the labels above the top bubble
            ys = [r["published_top1"] for r in points]
            fig.update_yaxes(range=[min(ys) - 2, max(ys) + 2.5])
        components.plot(fig, key="cmp_scatter")
        st.caption(t("compare.bubble_note"))


tab_scatter, tab_acc, tab_lat, tab_size = st.tabs(
    [t("compare.tab_scatter"), t("compare.tab_accuracy"), t("compare.tab_latency"), t("compare.tab_size")]
)

with tab_scatter:
    scatter(rows)

with tab_acc:
    acc = table.drop_duplicates("name")
    fig = go.Figure()
    fig.add_bar(x=acc["backbone"], y=acc["top-1 (%)"], name=t("compare.bar_top1"))
    fig.add_bar(x=acc["backbone"], y=acc["top-5 (%)"], name=t("compare.bar_top5"))
    for col in [c for c in acc.columns if c.startswith(TOP1_ON[0])]:
        fig.add_bar(x=acc["backbone"], y=acc[col], name=t("compare.bar_top1_on", dataset=col[len(TOP1_ON[0]) : -len(TOP1_ON[1])]))
    fig.update_layout(barmode="group", yaxis_title=t("compare.axis_accuracy"), height=430, margin=dict(t=30))
    components.plot(fig, key="cmp_acc")

with tab_lat:
    lat = table[measured]
    if lat.empty:
        st.info(t("compare.measure_first"))
    else:
        fig = go.Figure()
        for series, group in lat.groupby("series", sort=False):
            fig.add_bar(
                x=group["backbone"],
                y=group["latency median (ms)"],
                name=series_label(series),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=group["p90 (ms)"] - group["latency median (ms)"],
                    arrayminus=group["latency median (ms)"] - group["p10 (ms)"],
                ),
            )
        fig.update_layout(barmode="group", yaxis_title=t("compare.axis_latency", batch=batch_size), height=430, margin=dict(t=30))
        components.plot(fig, key="cmp_lat")

with tab_size:
    sz = table.drop_duplicates("name")
    metric = st.radio(t("compare.metric"), ["params (M)", "GMACs", "size (MiB)"], format_func=column_label,
                      horizontal=True, key="cmp_size_metric")
    fig = go.Figure(go.Bar(x=sz["backbone"], y=sz[metric], marker_color="#7c3aed"))
    fig.update_layout(yaxis_title=column_label(metric), height=430, margin=dict(t=30))
    components.plot(fig, key="cmp_size")
    st.caption(t("compare.macs_note"))

def pack_bytes() -> bytes:
    """The slide pack of this page: accuracy against MACs and against latency, the table, settings, commands."""
    from backbones.results.charts import draw_accuracy_vs_cost, draw_latency_comparison
    from backbones.results.comparison import ComparisonRow
    from viz.pack import build_pack, compare_commands

    figures = {"accuracy-vs-gmacs": draw_accuracy_vs_cost(rows, "gmacs", "GMACs per image (multiply-accumulates)")}
    if any(r["latency_ms"] is not None for r in rows):
        figures["accuracy-vs-latency"] = draw_accuracy_vs_cost(rows, "latency_ms", f"latency, median (ms per batch of {batch_size})", log_x=False)
        figures["latency"] = draw_latency_comparison(
            [ComparisonRow(**{k: v for k, v in r.items() if k not in ("params_m", "gmacs", "published_gmacs")}) for r in rows]
        )
    return build_pack(
        figures,
        {"comparison": table},
        {"models": [state.store_name(o) for o in models], "device": device, "batch_size": batch_size, "threads": threads_filter},
        compare_commands([state.model_ref(o) for o in models], device=device, batch_size=batch_size, threads=threads_filter),
    )


st.download_button(t("compare.pack"), pack_bytes,
                   file_name="backbone-lens-compare.zip", mime="application/zip", key="cmp_pack")

with st.expander(t("compare.import_title")):
    st.markdown(t("compare.import_how"))
    upload = st.file_uploader("results.json", type=["json"], key="cmp_import", max_upload_size=actions.RESULTS_UPLOAD_MB)
    if upload is not None and st.button(t("compare.import"), key="cmp_import_go"):
        try:
            n = actions.import_results(upload.getvalue())
        except BackboneError as exc:
            components.show_error(exc)
        else:
            st.success(t("compare.imported", n=n))
    st.download_button(
        t("compare.export"),
        actions.export_results(),
        file_name="backbone-lens-results.json",
        mime="application/json",
        key="cmp_export",
    )
