"""The catalog's record types: :class:`ModelEntry` (a backbone and its published figures) and
:class:`WeightsInfo` (one set of trained weights). Pure data, shared by :mod:`backbones.zoo.catalog`
(which fills them from the libraries) and :mod:`backbones.zoo.snapshot` (which keeps them in a file).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from backbones.inference.preprocessing import Preprocessing

COUNTED_SOURCE = "counted here: torch.utils.flop_counter FLOPs / 2, one image at the input size"

#: Families whose layers have no convolutional receptive field.
TRANSFORMER_FAMILIES = frozenset({"ViT", "Swin", "MaxViT"})


@dataclass(frozen=True)
class WeightsInfo:
    """One set of trained weights for an architecture (status is looked up separately)."""

    name: str
    url: str | None
    filename: str | None
    top1: float | None
    top5: float | None
    file_size_mib: float | None
    macs: int | None
    input_size: tuple[int, int, int]
    preprocessing: Preprocessing
    is_default: bool = False
    hf_hub_id: str | None = None  # timm's Hugging Face repo (``timm/rexnet_100.nav_in1k``), as its pretrained cfg says

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        return d


@dataclass(frozen=True)
class ModelEntry:
    """A catalog entry: what a backbone is and what was published about it."""

    name: str
    display_name: str
    source: str  # "torchvision" | "timm" | "bundled"
    family: str
    arch: str  # the builder's own name (torchvision or timm)
    params: int | None
    macs: int | None
    file_size_mib: float | None
    published_top1: float | None
    published_top5: float | None
    published_source: str | None
    input_size: tuple[int, int, int]
    preprocessing: Preprocessing
    weights: tuple[WeightsInfo, ...] = ()
    default: bool = False
    macs_source: str = COUNTED_SOURCE
    published_macs: int | None = None
    published_macs_source: str | None = None
    published_params: int | None = None
    reference_cpu_ms: float | None = None
    reference_cpu_source: str | None = None
    num_classes: int = 1000
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_transformer(self) -> bool:
        return self.family in TRANSFORMER_FAMILIES

    @property
    def default_weights(self) -> WeightsInfo | None:
        for w in self.weights:
            if w.is_default:
                return w
        return self.weights[0] if self.weights else None

    def weights_named(self, name: str) -> WeightsInfo | None:
        for w in self.weights:
            if w.name.lower() == name.lower():
                return w
        return None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        d["weights"] = [w.to_dict() for w in self.weights]
        return d
