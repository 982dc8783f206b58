"""Static charts of a transfer ranking for slide packs (matplotlib ``Figure`` objects, no pyplot state)."""

from __future__ import annotations

from matplotlib.figure import Figure


def draw_transfer_scatter(report, x: str, y: str, x_label: str) -> Figure:
    """Score ``y`` (``linear``/``knn`` top-1 in %, or ``logme``) of each row of a
    :class:`~backbones.transfer.ranking.TransferReport` against cost ``x``, the Pareto front dashed."""
    scale = 1 if y == "logme" else 100
    points = [(r.model, getattr(r, x, None), report.score(r, y)) for r in report.rows]
    points = [(n, a, b * scale) for n, a, b in points if a is not None and b is not None]
    fig = Figure(figsize=(19.2, 10.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if not points:
        ax.text(0.5, 0.5, f"no backbone has both {x_label} and this score yet", ha="center", va="center",
                transform=ax.transAxes, fontsize=18)
        ax.set_axis_off()
        return fig
    for name, a, b in points:
        ax.scatter(a, b, s=300, alpha=0.6, edgecolors="black")
        ax.annotate(name, (a, b), textcoords="offset points", xytext=(0, 14), ha="center", fontsize=16)
    front = sorted((getattr(report.rows[i], x), report.score(report.rows[i], y) * scale) for i in report.pareto_front(x, y))
    if len(front) > 1:
        ax.plot([a for a, _ in front], [b for _, b in front], "--", color="#dc2626", label="Pareto front")
        ax.legend(fontsize=15)
    if x in ("latency_ms", "macs"):
        ax.set_xscale("log")
    what = "LogME (per sample)" if y == "logme" else f"{'linear-probe' if y == 'linear' else 'k-NN'} top-1 (%)"
    ax.set_xlabel(x_label, fontsize=18)
    ax.set_ylabel(f"{what} on {report.dataset}", fontsize=18)
    ax.tick_params(labelsize=15)
    ax.grid(True, alpha=0.3)
    return fig
