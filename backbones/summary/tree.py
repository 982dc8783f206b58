"""torchinfo's layer tree turned into a :class:`ModelSummary`: one forward pass, traced, one row per module call.

Rows, shapes and parameters come from ``torchinfo.summary`` (one row per module
call, in execution order, like its printed table). MACs do not: torchinfo counts a
``Linear`` on an ``(N, H, W, C)`` tensor once per sample and skips attention's matrix
products, so ConvNeXt, Swin, ViT and MaxViT read 3-700x too low. A
:class:`~backbones.measure.compute.MacCounter` (``torch.utils.flop_counter``) runs
during the same pass, and each row gets the MACs counted while that module call
ran (a container's include everything inside it, attention products too). The
:class:`~backbones.summary.tracer.Tracer` adds each row's receptive field,
:mod:`~backbones.summary.derivations` its worked derivation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from backbones.callbacks import ProgressFn, StopFn
from backbones.errors import CancelledError
from backbones.summary.derivations import derive, derive_receptive_field
from backbones.summary.geometry import read_window
from backbones.summary.rows import LayerRow, ModelSummary
from backbones.summary.tracer import INPUT_FIELD, Field, Tracer, Untraced

TRANSFORMER_NOTE = "does not apply: self-attention mixes every position (transformer)"
WHOLE_NOTE = "whole input: every element sees the entire image (global pooling or flatten)"
APPROX_NOTE = "approximate: adaptive pooling with uneven windows"

_COLUMNS = ("input_size", "output_size", "num_params", "kernel_size", "mult_adds", "trainable")


def looks_like_transformer(model: nn.Module) -> bool:
    """Whether ``model`` has attention layers (then receptive fields do not apply)."""
    return any(
        isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention") for m in model.modules()
    )


def summarize_module(
    model: nn.Module,
    *,
    name: str,
    architecture: str,
    input_size: tuple[int, int, int],
    transformer: bool,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ModelSummary:
    """Run ``model`` once on a ``(1, *input_size)`` batch (zeros, or empty on the meta device) and summarise it.

    Errors of the forward pass propagate unchanged; the caller translates them.
    """
    if should_stop is not None and should_stop():
        raise CancelledError("summary cancelled")
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    if device.type == "meta":
        x = torch.empty(1, *input_size, device=device, dtype=dtype)
    else:
        x = torch.zeros(1, *input_size, device=device, dtype=dtype)
    from backbones.measure.compute import MacCounter

    counter = MacCounter()
    tracer = Tracer(model, progress=progress, should_stop=should_stop, counter=counter)
    stats = _run_torchinfo(model, x, tracer, counter)
    summary = _build(
        stats, model, name=name, architecture=architecture, input_size=input_size, tracer=tracer,
        transformer=transformer, total_macs=counter.macs, missed=tuple(dict.fromkeys(counter.missed)),
    )
    if progress is not None:
        progress(1, 1, f"{name}: {len(summary.layers)} rows")
    return summary


def _run_torchinfo(model: nn.Module, x: torch.Tensor, tracer: Tracer, counter):
    import torchinfo
    from torchinfo.torchinfo import clear_cached_forward_pass

    from backbones.measure.compute import unfused_attention

    tracer.fields[x] = INPUT_FIELD
    tracer.attach()
    try:
        # torchinfo runs under no_grad in eval mode: without unfused_attention, nn.MultiheadAttention
        # would compute attention in one fused kernel that no counter sees.
        with counter, unfused_attention(), tracer:
            return torchinfo.summary(model, input_data=[x], verbose=0, depth=1000, col_names=_COLUMNS, mode="eval")
    finally:
        tracer.detach()
        # torchinfo keeps the last layer list of every model class, and with it the model.
        clear_cached_forward_pass()


def _build(
    stats, model: nn.Module, *, name: str, architecture: str, input_size, tracer: Tracer, transformer: bool,
    total_macs: int, missed: tuple[str, ...] = (),
) -> ModelSummary:
    notes: list[str] = []
    if transformer:
        rf_state, rf_note = False, TRANSFORMER_NOTE
        notes.append("receptive fields do not apply: self-attention mixes every position (transformer)")
    elif tracer.failure:
        rf_state, rf_note = False, f"could not be traced ({tracer.failure})"
        notes.append(f"receptive fields {rf_note}")
    else:
        rf_state, rf_note = True, None

    rows = _collect_rows(stats.summary_list, tracer)
    _roll_up_containers(rows)
    _mark_unattributed(rows, tracer.used_params)
    if missed:
        notes.append(
            f"MACs not counted: fused kernels without a formula ran ({', '.join(missed)}); the rows that ran "
            "them say so, and the totals are too low by their work"
        )
    outside = total_macs - sum(r["mult_adds"] for r in rows if r["depth"] == 1 and r["call"] == 0)
    if rows and outside > 0:
        notes.append(f"{outside:,} MACs are computed by the model's own forward, outside its blocks")
    untraced_reasons: set[str] = set()
    layers = tuple(_finish_row(row, rf_state, rf_note, untraced_reasons) for row in rows)
    notes.extend(f"receptive fields stop at: {reason}" for reason in sorted(untraced_reasons))
    notes.extend(_not_run_notes(model, stats, tracer.used_params))
    return ModelSummary(
        model=name,
        input_size=tuple(input_size),  # type: ignore[arg-type]
        total_params=int(stats.total_params),
        trainable_params=int(stats.trainable_params),
        total_mult_adds=int(total_macs),
        layers=layers,
        architecture=architecture,
        receptive_fields=rf_state,
        notes=tuple(notes),
    )


def _read_name(info) -> str:
    """The dotted module name of a torchinfo layer (``""`` for the model itself)."""
    parts = []
    while info is not None and info.depth > 0:
        parts.append(info.var_name)
        info = info.parent_info
    return ".".join(reversed(parts))


def _read_trainable(info) -> bool | None:
    """True / False when all / none of the parameters train; None when mixed or parameter-free."""
    if info.num_params == 0:
        return None
    if info.trainable_params == info.num_params:
        return True
    if info.trainable_params == 0:
        return False
    return None


def _collect_rows(infos, tracer: Tracer) -> list[dict]:
    """One row per torchinfo layer, as the keyword arguments of a :class:`LayerRow` so far.

    Keys starting with ``_`` (the module, its traced input and output field,
    whether it ran) are for :func:`_finish_row` and dropped there.
    """
    seen_calls: dict[int, int] = {}
    name_calls: dict[str, int] = {}
    rows: list[dict] = []
    for info in infos:
        row_name = _read_name(info)
        call = name_calls.get(row_name, 0)
        name_calls[row_name] = call + 1
        f_in = f_out = None
        macs, missed = 0, ()
        if info.executed:
            k = seen_calls.get(info.layer_id, 0)
            seen_calls[info.layer_id] = k + 1
            slots = tracer.calls.get(info.layer_id, [])
            if k < len(slots):
                f_in, f_out, macs, missed = slots[k]
        own = 0 if info.is_recursive else (info.num_params if info.is_leaf_layer else max(info.leftover_params(), 0))
        rows.append(
            {
                "name": row_name,
                "type": info.class_name,
                "depth": info.depth,
                "parent": None if info.depth == 0 else _read_name(info.parent_info),
                "input_shape": tuple(int(v) for v in info.input_size) if info.executed else (),
                "output_shape": tuple(int(v) for v in info.output_size) if info.executed else (),
                "params": own,
                "params_total": info.num_params,
                "trainable_params": info.trainable_params,
                "trainable": _read_trainable(info),
                "mult_adds": macs,
                "macs_note": f"not attributed: fused {', '.join(dict.fromkeys(missed))} has no count" if missed else None,
                **_read_geometry(info.module),
                "is_leaf": info.is_leaf_layer,
                "call": call,
                "_module": info.module,
                "_f_in": f_in,
                "_f_out": f_out,
                "_executed": info.executed,
            }
        )
    return rows


def _roll_up_containers(rows: list[dict]) -> None:
    """A container never called itself (a ModuleList) gets the MACs of its direct children's calls
    and the shape and field of its last descendant (one that ran keeps what was counted in its call).

    Deepest first, so a ModuleList inside a ModuleList sums children already rolled up.
    """
    for i in sorted(range(len(rows)), key=lambda k: -rows[k]["depth"]):
        row = rows[i]
        if row["is_leaf"] or row["_executed"]:
            continue
        j, total, last = i + 1, 0, None
        while j < len(rows) and rows[j]["depth"] > row["depth"]:
            if rows[j]["depth"] == row["depth"] + 1:
                total += rows[j]["mult_adds"]
            if rows[j]["_executed"]:
                last = rows[j]
            j += 1
        row["mult_adds"] = total
        if last is not None:
            row["output_shape"] = last["output_shape"]
            row["_f_out"] = last["_f_out"]


def _mark_unattributed(rows: list[dict], used_params: set[int]) -> None:
    """A layer that never ran as a module but whose weights its parent used (nn.MultiheadAttention's
    out_proj) has its MACs in the parent's row: say so instead of showing 0."""
    for row in rows:
        if row["_executed"] or row["macs_note"] or not row["is_leaf"]:
            continue
        params = list(row["_module"].parameters())
        if params and any(id(p) in used_params for p in params):
            row["macs_note"] = f"not attributed: counted in {row['parent'] or 'the model'}, which uses its weights"


def _finish_row(row: dict, rf_state: bool, rf_note: str | None, untraced_reasons: set[str]) -> LayerRow:
    """Neurons, derivation and receptive field of a collected row; adds to ``untraced_reasons``."""
    module, f_in, f_out = row.pop("_module"), row.pop("_f_in"), row.pop("_f_out")
    row.pop("_executed")
    out_shape = row["output_shape"]
    row["neurons"] = math.prod(out_shape[1:]) if len(out_shape) >= 2 else None
    own = row["params_total"] if row["is_leaf"] else row["params"]
    row["derivation"] = derive(module, row["type"], row["input_shape"], out_shape, own)
    rf = jump = rf_hw = jump_hw = None
    whole, note, rf_derivation = False, rf_note, None
    layout = None
    if len(out_shape) == 4 and isinstance(f_out, Field) and not f_out.whole:
        layout = {(2, 3): "NCHW", (1, 2): "NHWC"}.get(f_out.axes)
    if rf_state:
        if isinstance(f_out, Field):
            rf_hw, whole = f_out.rf, f_out.whole
            rf = max(rf_hw)
            if len(out_shape) == 4:
                jump_hw = f_out.jump
                jump = max(jump_hw)
            note = WHOLE_NOTE if whole else (APPROX_NOTE if f_out.approx else None)
            if row["is_leaf"]:
                rf_derivation = derive_receptive_field(module, f_in, f_out)
        elif isinstance(f_out, Untraced):
            note = f"could not be traced: {f_out.reason}"
            untraced_reasons.add(f_out.reason)
        else:
            note = "no traced tensor output"
    return LayerRow(
        **row,
        receptive_field=rf,
        jump=jump,
        receptive_field_hw=rf_hw,
        jump_hw=jump_hw,
        whole_input=whole,
        rf_note=note,
        rf_derivation=rf_derivation,
        layout=layout,
    )


def _read_geometry(module: nn.Module) -> dict[str, Any]:
    """Kernel / stride / padding / dilation / groups of conv and pooling modules, ``None`` elsewhere."""
    none: dict[str, Any] = {"kernel_size": None, "stride": None, "padding": None, "dilation": None, "groups": None}
    if not hasattr(module, "kernel_size"):
        return none
    try:
        window = read_window(module)
    except (TypeError, ValueError, IndexError):
        return none
    groups = getattr(module, "groups", None)
    return {
        "kernel_size": window.kernel,
        "stride": window.stride,
        "padding": window.padding,
        "dilation": window.dilation,
        "groups": int(groups) if isinstance(groups, int) else None,
    }


def _not_run_notes(model: nn.Module, stats, used_params: set[int]) -> list[str]:
    """Submodules that never ran (auxiliary heads in eval): their parameters are in the total, without rows."""
    ran = {info.layer_id for info in stats.summary_list if info.executed}
    used: dict[int, bool] = {}

    def visit(m: nn.Module) -> bool:
        result = id(m) in ran
        for child in m.children():
            result = visit(child) or result
        used[id(m)] = result
        return result

    visit(model)
    idle = []

    def walk(m: nn.Module, prefix: str) -> None:
        for child_name, child in m.named_children():
            full = f"{prefix}.{child_name}" if prefix else child_name
            if used.get(id(child), True):
                walk(child, full)
                continue
            params = list(child.parameters())
            if params and not any(id(p) in used_params for p in params):
                idle.append(f"{full} ({type(child).__name__}, {sum(p.numel() for p in params):,} params)")

    walk(model, "")
    if not idle:
        return []
    return ["not run in eval mode, parameters counted in the total but no rows: " + ", ".join(idle)]
