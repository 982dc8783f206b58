"""One figure per backbone: the parameters and MACs every page and command shows, and the published ones beside.

The figure shown everywhere is the one counted here (``torch.utils.flop_counter`` FLOPs / 2, the
same counter per layer and in total; parameters of the built architecture), so Compare, Models,
Architecture, the slide pack and the CLI agree to the unit for the same backbone and input size.
For catalog backbones at their input size it is read from ``data/counted.json`` (no model is built,
torch is not imported); a checkpoint with another head or another input size is counted from its
summary. The published figure (torchvision's ``weights.meta``, timm's tables) travels beside it with
its source, and :attr:`BackboneFigures.differs` says when a page should show both::

    f = backbone_figures("convnext_tiny")
    f.macs, f.published_macs, f.published_macs_source   # 4455531264, 4460000000, 'torchvision weights meta ...'
    backbone_figures("resnet50", input_size=(3, 160, 160), counted=(s.total_params, s.total_mult_adds))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from backbones.zoo.catalog import COUNTED_SOURCE, get_entry

#: Counted and published MACs closer than this are the same figure (torchvision's have 3 decimals).
SAME_FIGURE = 0.01


@dataclass(frozen=True)
class BackboneFigures:
    """Parameters and MACs (one image) of a backbone at ``input_size``: counted here, and as published."""

    model: str
    input_size: tuple[int, int, int]
    params: int | None
    macs: int | None
    source: str
    published_params: int | None
    published_macs: int | None
    published_macs_source: str | None
    published_input_size: tuple[int, int, int]

    @property
    def differs(self) -> bool:
        """Whether the published figures describe something else (input size, head) or disagree by over 1%."""
        if self.input_size != self.published_input_size:
            return self.published_macs is not None
        pairs = [(self.params, self.published_params), (self.macs, self.published_macs)]
        return any(c is not None and p and abs(c - p) > SAME_FIGURE * p for c, p in pairs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["differs"] = self.differs
        return d


def backbone_figures(
    name: str, *, input_size: Sequence[int] | None = None, counted: tuple[int, int] | None = None
) -> BackboneFigures:
    """The figures of catalog backbone ``name`` at ``input_size`` (default: its own).

    ``counted`` is ``(params, MACs)`` from a summary of what is actually shown (a checkpoint with its own
    head, another input size); without it the catalog's counted figures are used at the default input
    size and :func:`~backbones.measure.compute.count_macs` counts any other.
    """
    entry = get_entry(name)
    size = tuple(int(v) for v in (input_size or entry.input_size))
    if counted is not None:
        params, macs = counted
    elif size == tuple(entry.input_size):
        params, macs = entry.params, entry.macs
    else:
        from backbones.measure.compute import count_macs

        params, macs = entry.params, count_macs(entry.name, input_size=size).macs
    return BackboneFigures(
        model=entry.name,
        input_size=size,  # type: ignore[arg-type]
        params=params,
        macs=macs,
        source=COUNTED_SOURCE,
        published_params=entry.published_params,
        published_macs=entry.published_macs,
        published_macs_source=entry.published_macs_source,
        published_input_size=tuple(entry.input_size),  # type: ignore[arg-type]
    )
