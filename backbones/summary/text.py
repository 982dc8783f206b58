"""A :class:`ModelSummary` as a readable text table, like torchinfo's printout (``python -m backbones summary``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from backbones.summary.geometry import format_axis
from backbones.summary.rows import LayerRow, ModelSummary

_HEADERS = ["Layer (name: type)", "Output Shape", "Param #", "Mult-Adds", "RF", "Jump"]


def format_summary(summary: ModelSummary, *, depth: int | None = None) -> str:
    """A readable tree like torchinfo's, with output shape, params, MACs, receptive field and jump.

    A container shown at the cut-off ``depth`` gives the totals below it; an
    expanded one only its own parameters and MACs (attention's products, computed
    by the container itself), so each column adds up.
    """
    rows = summary.rows(depth)
    limit = summary.max_depth if depth is None else depth
    table = [_format_cells(summary, rows, i, limit) for i in range(len(rows))]
    widths = [max(len(str(x)) for x in col) for col in zip(_HEADERS, *table)]
    line = "=" * (sum(widths) + 2 * (len(widths) - 1))

    def fmt(cells):
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [line, fmt(_HEADERS), line, *(fmt(r) for r in table), line]
    c, h, w = summary.input_size
    out += [
        f"Model: {summary.model}" + (f" ({summary.architecture})" if summary.architecture not in ("", summary.model) else ""),
        f"Input size: {c}x{h}x{w}",
        f"Total params: {summary.total_params:,}",
        f"Trainable params: {summary.trainable_params:,}",
        f"Non-trainable params: {summary.total_params - summary.trainable_params:,}",
        f"Total MACs: {summary.total_mult_adds:,} ({summary.total_mult_adds / 1e9:.2f} G)",
        "RF = receptive field and Jump = effective stride, in input pixels; (all) = sees the whole input.",
    ]
    out += [f"Note: {n}" for n in summary.notes]
    out.append(line)
    return "\n".join(out)


def _format_cells(summary: ModelSummary, rows: Sequence[LayerRow], i: int, limit: int) -> list[str]:
    """The table cells of ``rows[i]``: tree label, shape, params, MACs, receptive field, jump."""
    row = rows[i]
    collapsed = not row.is_leaf and row.depth >= limit
    if row.call:
        params = "(shared)" if row.params_total else "--"
    else:
        params = _format_count(row.params_total if collapsed else row.params)
    macs = row.mult_adds if (row.is_leaf or collapsed) else _own_macs(rows, i)
    rf = "--" if summary.receptive_fields else "n/a"
    if row.receptive_field is not None:
        rf = _format_per_axis(row.receptive_field, row.receptive_field_hw)
        if row.whole_input:
            rf += " (all)"
    jump = "--" if row.jump is None else _format_per_axis(row.jump, row.jump_hw)
    shape = "[" + ", ".join(map(str, row.output_shape)) + "]" if row.output_shape else "--"
    return [_format_label(rows, i), shape, params, _format_count(macs), rf, jump]


def _own_macs(rows: Sequence[LayerRow], i: int) -> int:
    """MACs of an expanded container's call ``rows[i]`` not already in the rows of its direct children."""
    depth = rows[i].depth
    children = [r.mult_adds for r in _until_shallower(rows, i + 1, depth + 1) if r.depth == depth + 1]
    return max(rows[i].mult_adds - sum(children), 0)


def _format_label(rows: Sequence[LayerRow], i: int) -> str:
    """``│ ├─conv1: Conv2d``: the vertical bars show which depths still have siblings to come."""
    row = rows[i]
    if row.depth == 0:
        return row.type
    bars = ""
    for d in range(1, row.depth):
        more = any(r.depth == d for r in _until_shallower(rows, i + 1, d))
        bars += "│ " if more else "  "
    last = not any(r.depth == row.depth for r in _until_shallower(rows, i + 1, row.depth))
    label = f"{bars}{'└─' if last else '├─'}{row.short_name}: {row.type}"
    if row.call:
        label += f" (call {row.call + 1})"
    return label


def _format_count(n: int | None) -> str:
    return "--" if not n else f"{n:,}"


def _format_per_axis(value: int, hw: tuple[int, int] | None) -> str:
    """``"19"`` or ``"27x11"`` when the two image axes differ."""
    return format_axis(hw) if hw else str(value)


def _until_shallower(rows: Sequence[LayerRow], start: int, depth: int) -> Iterator[LayerRow]:
    for r in rows[start:]:
        if r.depth < depth:
            return
        yield r
