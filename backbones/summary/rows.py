"""The result types of a summary: one :class:`LayerRow` per module call, gathered in a :class:`ModelSummary`.

Both are frozen (summaries are cached and shared between dashboard sessions);
``to_dict()`` gives the ``summary --json`` document.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from backbones.errors import LayerError


@dataclass(frozen=True)
class LayerRow:
    """One module call: a row of the summary tree.

    ``name`` is the dotted module path (``model.get_submodule(name)``); the root
    row's name is ``""`` and its type the model's class. Shapes include the
    batch dimension of 1, ``(1, C, H, W)``. ``params`` counts parameters not
    already shown in a child row (so the rows add up to the total);
    ``params_total`` everything under the node. ``mult_adds`` are the MACs
    counted by ``torch.utils.flop_counter`` while this call ran (FLOPs / 2; a
    container's include its children's and its own matrix products, e.g.
    attention's); ``macs_note`` says why a row's count is not its own ("not
    attributed: ..."), else ``None``.
    ``receptive_field`` / ``jump`` are in input pixels, the larger of the two
    image axes (``receptive_field_hw`` / ``jump_hw`` give both); ``jump`` is null
    where the output is not a 4-D feature map. ``call`` > 0 marks a module run
    again in the same forward pass (a reused ReLU): its parameters count once.
    """

    name: str
    type: str
    depth: int
    parent: str | None
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    params_total: int
    trainable_params: int
    trainable: bool | None
    mult_adds: int
    kernel_size: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    padding: tuple[int, ...] | str | None
    dilation: tuple[int, ...] | None
    groups: int | None
    neurons: int | None
    receptive_field: int | None
    jump: int | None
    receptive_field_hw: tuple[int, int] | None
    jump_hw: tuple[int, int] | None
    whole_input: bool
    rf_note: str | None
    rf_derivation: str | None
    derivation: str | None
    is_leaf: bool
    call: int = 0
    layout: str | None = None
    macs_note: str | None = None

    @property
    def short_name(self) -> str:
        """The last part of the dotted name (the class name for the root)."""
        return self.name.rpartition(".")[2] if self.name else self.type

    @property
    def is_spatial(self) -> bool:
        """Whether the output is a 4-D ``(N, C, H, W)`` feature map (not a channels-last ``(N, H, W, C)`` one)."""
        return len(self.output_shape) == 4 and self.layout != "NHWC"

    def to_dict(self) -> dict:
        def seq(v):
            return list(v) if isinstance(v, tuple) else v

        return {
            "name": self.name,
            "type": self.type,
            "depth": self.depth,
            "parent": self.parent,
            "input_shape": list(self.input_shape) or None,
            "output_shape": list(self.output_shape) or None,
            "params": self.params,
            "params_total": self.params_total,
            "trainable_params": self.trainable_params,
            "mult_adds": self.mult_adds,
            "macs_note": self.macs_note,
            "trainable": self.trainable,
            "kernel_size": seq(self.kernel_size),
            "stride": seq(self.stride),
            "padding": seq(self.padding),
            "dilation": seq(self.dilation),
            "groups": self.groups,
            "neurons": self.neurons,
            "receptive_field": self.receptive_field,
            "jump": self.jump,
            "receptive_field_hw": seq(self.receptive_field_hw),
            "jump_hw": seq(self.jump_hw),
            "whole_input": self.whole_input,
            "rf_note": self.rf_note,
            "rf_derivation": self.rf_derivation,
            "derivation": self.derivation,
            "is_leaf": self.is_leaf,
            "call": self.call,
            "layout": self.layout,
        }


@dataclass(frozen=True)
class ModelSummary:
    """A model's layer tree for one input size. Immutable (cached and shared).

    ``layers`` are in execution order, each container before its children
    (like torchinfo's table); ``input_size`` is ``(C, H, W)``.
    """

    model: str
    input_size: tuple[int, int, int]
    total_params: int
    trainable_params: int
    total_mult_adds: int
    layers: tuple[LayerRow, ...]
    architecture: str = ""
    receptive_fields: bool = True
    notes: tuple[str, ...] = ()

    @property
    def max_depth(self) -> int:
        return max((r.depth for r in self.layers), default=0)

    @property
    def names(self) -> tuple[str, ...]:
        """Every module name with a row, once, in execution order."""
        return tuple(dict.fromkeys(r.name for r in self.layers))

    def find(self, name: str, *, call: int = 0) -> LayerRow:
        """The row of ``name`` (its ``call``-th run); :class:`LayerError` names close matches."""
        return self.layers[self.index(name, call=call)]

    def index(self, name: str, *, call: int = 0) -> int:
        """Position of ``name`` in :attr:`layers` (for stepping to the next / previous row).

        :class:`LayerError` names close matches when there is no such row.
        """
        for i, row in enumerate(self.layers):
            if row.name == name and row.call == call:
                return i
        close = difflib.get_close_matches(name, [n for n in self.names if n], n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; {len(self.names) - 1} layers, e.g. {', '.join(self.names[1:4])}"
        raise LayerError(f"{self.model} has no layer {name!r}{hint}")

    def children(self, name: str = "") -> tuple[LayerRow, ...]:
        """Direct children of ``name`` (``""`` = the model), first calls only."""
        if name:
            self.find(name)
        return tuple(r for r in self.layers if r.parent == name and r.call == 0)

    def rows(self, max_depth: int | None = None) -> tuple[LayerRow, ...]:
        """Rows with ``depth <= max_depth`` (all rows for ``None``): the tree expanded to a depth."""
        if max_depth is None:
            return self.layers
        return tuple(r for r in self.layers if r.depth <= max_depth)

    def blocks(self, depth: int = 1) -> tuple[LayerRow, ...]:
        """First-call rows at exactly ``depth``: the bars of a params / MACs per block chart.

        Their ``params_total`` and ``mult_adds`` cover everything below them.
        """
        return tuple(r for r in self.layers if r.depth == depth and r.call == 0)

    def leaves(self) -> tuple[LayerRow, ...]:
        """Leaf rows (conv, norm, activation, ...): stepping through the network one layer at a time."""
        return tuple(r for r in self.layers if r.is_leaf)

    def search(self, text: str) -> tuple[LayerRow, ...]:
        """Rows whose name or type contains ``text`` (case-insensitive)."""
        needle = text.strip().lower()
        if not needle:
            return self.layers
        return tuple(r for r in self.layers if needle in r.name.lower() or needle in r.type.lower())

    def spatial_layers(self) -> tuple[str, ...]:
        """Names of layers whose output is a 4-D feature map: choices for a CAM / feature-map layer picker.

        In execution order, each name once; the model itself, 1x1 maps (after global
        pooling, inside SE gates), channels-last outputs and maps where attention has
        mixed every position (transformers after their patch embedding) are left out.
        """
        traced = any(r.layout is not None for r in self.layers)
        return tuple(
            dict.fromkeys(
                r.name
                for r in self.layers
                if r.name
                and (r.layout == "NCHW" if traced else r.is_spatial)
                and r.output_shape[2] * r.output_shape[3] > 1
            )
        )

    def to_dict(self, depth: int | None = None) -> dict:
        """The ``summary --json`` document; ``depth`` keeps rows with ``depth <= depth``."""
        return {
            "model": self.model,
            "architecture": self.architecture,
            "input_size": list(self.input_size),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.total_params - self.trainable_params,
            "total_mult_adds": self.total_mult_adds,
            "receptive_fields": self.receptive_fields,
            "notes": list(self.notes),
            "layers": [r.to_dict() for r in self.rows(depth)],
        }
