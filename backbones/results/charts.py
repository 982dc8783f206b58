"""Static charts of stored results for reports and MLflow artifacts (matplotlib, no pyplot state).

``Figure`` objects are built directly (not through ``pyplot``): no global figure list, safe in
threads and servers, nothing to close.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure


def draw_confusion(payload: dict) -> Figure:
    """The confusion matrix of an evaluation payload: dataset classes down, predicted columns across."""
    matrix = payload.get("confusion") or [[0]]
    rows = list(payload.get("labels") or [str(i) for i in range(len(matrix))])
    columns = list(payload.get("confusion_columns") or [str(i) for i in range(len(matrix[0]))])
    size = 1.5 + 0.45 * max(len(rows), len(columns))
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class")
    top = max((max(r) for r in matrix if r), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
    ax.set_title(f"{payload.get('model', '')} on {payload.get('dataset', '')}")
    fig.colorbar(image, ax=ax, label="images")
    return fig


def draw_latency_comparison(rows: Sequence) -> Figure:
    """Median latency (p10-p90 whiskers) of each measured comparison row
    (:class:`~backbones.results.comparison.ComparisonRow`), fastest at the top."""
    measured = sorted((r for r in rows if r.latency_ms is not None), key=lambda r: r.latency_ms, reverse=True)
    fig = Figure(figsize=(9, 1.5 + 0.35 * max(len(measured), 1)), layout="constrained")
    ax = fig.add_subplot()
    if not measured:
        ax.text(0.5, 0.5, "no latency measurements stored", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    labels = [f"{r.display_name} ({r.series}, {r.device}, batch {r.batch_size})" for r in measured]
    medians = [r.latency_ms for r in measured]
    low = [max(0.0, r.latency_ms - (r.p10_ms if r.p10_ms is not None else r.latency_ms)) for r in measured]
    high = [max(0.0, (r.p90_ms if r.p90_ms is not None else r.latency_ms) - r.latency_ms) for r in measured]
    ax.barh(range(len(measured)), medians, xerr=[low, high], color="#4C78A8", capsize=3)
    ax.set_yticks(range(len(measured)), labels)
    ax.set_xlabel("latency, median (ms per batch); whiskers p10-p90")
    ax.set_title("latest measurement of each model and series")
    return fig


def draw_accuracy_vs_cost(rows: Sequence[dict], attr: str, x_label: str, *, log_x: bool = True) -> Figure:
    """Published top-1 against a cost (``attr`` of the Compare rows), bubble area ∝ parameters, names beside."""
    points = [r for r in rows if r.get(attr) is not None and r.get("published_top1") is not None]
    fig = Figure(figsize=(19.2, 10.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if not points:
        ax.text(0.5, 0.5, "nothing to plot on this axis yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    biggest = max((r.get("params_m") or 0) for r in points) or 1
    for r in points:
        size = 150 + 3000 * ((r.get("params_m") or 0) / biggest)
        ax.scatter(r[attr], r["published_top1"], s=size, alpha=0.55, edgecolors="black")
        ax.annotate(r["display_name"], (r[attr], r["published_top1"]), textcoords="offset points", xytext=(0, 14),
                    ha="center", fontsize=16)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(x_label, fontsize=18)
    ax.set_ylabel("ImageNet top-1 (%, published)", fontsize=18)
    ax.tick_params(labelsize=15)
    ax.grid(True, alpha=0.3)
    return fig
