"""The comparison table: published figures beside what was measured here (and elsewhere).

One :class:`ComparisonRow` per (model, measurement series). The published
columns come from the catalog with their sources; latency, size and MACs come
from the results store, latest measurement first, for a chosen device, batch
size and thread count. Imported measurements (a GPU box, a colleague's laptop)
are their own series. Evaluations on the user's datasets appear as
``accuracy on <dataset>``, linear probes (``transfer``) as ``<dataset> (linear probe)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from backbones.errors import BackboneError
from backbones.results.records import HERE
from backbones.results.store import ResultsStore
from backbones.zoo.catalog import get_entry
from backbones.zoo.figures import backbone_figures

#: Axes a scatter can put on x: (row attribute, label with honest units).
X_AXES = {
    "latency": ("latency_ms", "latency, median (ms per batch)"),
    "macs": ("gmacs", "GMACs per image (multiply-accumulates)"),
    "params": ("params_m", "parameters (millions)"),
    "size": ("size_mib", "file size (MiB, serialized state_dict)"),
}


@dataclass(frozen=True)
class ComparisonRow:
    model: str
    display_name: str
    source: str  # catalog source: torchvision | timm | bundled
    series: str  # "measured here" | "measured on <machine>" | "published only"
    published_top1: float | None
    published_top5: float | None
    published_source: str | None
    params: int | None
    macs: int | None
    size_mib: float | None
    size_source: str | None
    latency_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    throughput_ips: float | None = None
    runs: int | None = None
    device: str | None = None
    device_name: str | None = None
    batch_size: int | None = None
    threads: int | None = None
    measured_at: str | None = None
    reference_cpu_ms: float | None = None
    reference_cpu_source: str | None = None
    accuracy_on: dict = field(default_factory=dict)  # dataset (or "<dataset> (linear probe)") -> top-1 (fraction)
    # The source's own MACs where they differ from ``macs`` (counted here), with where they come from.
    published_macs: int | None = None
    published_macs_source: str | None = None

    @property
    def params_m(self) -> float | None:
        return None if self.params is None else self.params / 1e6

    @property
    def gmacs(self) -> float | None:
        return None if self.macs is None else self.macs / 1e9

    @property
    def published_gmacs(self) -> float | None:
        return None if self.published_macs is None else self.published_macs / 1e9

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params_m"] = self.params_m
        d["gmacs"] = self.gmacs
        d["published_gmacs"] = self.published_gmacs
        return d


def _matches(payload: dict, device: str | None, batch_size: int | None, threads: int | None) -> bool:
    if device is not None and not str(payload.get("device", "")).startswith(device):
        return False
    if batch_size is not None and payload.get("batch_size") != batch_size:
        return False
    if threads is not None and payload.get("threads") != threads and str(payload.get("device", "")).startswith("cpu"):
        return False
    return True


def comparison_rows(
    names: Sequence[str],
    *,
    store=None,
    device: str | None = "cpu",
    batch_size: int | None = 1,
    threads: int | None = None,
    display_names: dict[str, str] | None = None,
) -> list[ComparisonRow]:
    """Rows for ``names`` (catalog names, or names of checkpoints measured under their own name).

    For each model: one row per series with a matching measurement (the latest),
    or one "published only" row when nothing was measured yet.
    ``store`` is a :class:`~backbones.results.store.ResultsStore` (None: the default store);
    it is read once, for these models only. Stored rows that do not fit the schema are
    skipped with a notice in ``store.notices``.
    """
    store = ResultsStore() if store is None else store
    by_model: dict[str, list] = {}
    for r in sorted(store.query(kind=("latency", "evaluation", "transfer"), model=set(names)), key=lambda r: r.created):
        by_model.setdefault(r.model, []).append(r)
    rows: list[ComparisonRow] = []
    for name in names:
        stored = by_model.get(name, [])
        try:
            entry = get_entry(name)
        except BackboneError:
            entry = None
        figures = backbone_figures(entry.name) if entry else None
        published = figures is not None and figures.differs
        accuracy = {}
        for ev in (r for r in stored if r.kind == "evaluation"):
            dataset = ev.payload.get("dataset") or "dataset"
            if ev.payload.get("top1") is not None:
                accuracy[str(dataset)] = float(ev.payload["top1"])
        for tr in (r for r in stored if r.kind == "transfer"):  # the latest probe per dataset wins
            if tr.payload.get("top1") is not None:
                accuracy[f"{tr.payload.get('dataset') or 'dataset'} (linear probe)"] = float(tr.payload["top1"])
        base = dict(
            model=name,
            display_name=(display_names or {}).get(name) or (entry.display_name if entry else name),
            source=entry.source if entry else "checkpoint",
            published_top1=entry.published_top1 if entry else None,
            published_top5=entry.published_top5 if entry else None,
            published_source=entry.published_source if entry else None,
            params=figures.params if figures else None,
            macs=figures.macs if figures else None,
            published_macs=figures.published_macs if published else None,
            published_macs_source=figures.published_macs_source if published else None,
            size_mib=entry.file_size_mib if entry else None,
            size_source="published weights file" if entry and entry.file_size_mib else None,
            reference_cpu_ms=entry.reference_cpu_ms if entry else None,
            reference_cpu_source=entry.reference_cpu_source if entry else None,
            accuracy_on=accuracy,
        )
        latest: dict[str, object] = {}
        for r in stored:
            if r.kind == "latency" and _matches(r.payload, device, batch_size, threads):
                latest[r.source] = r
        if not latest:
            rows.append(ComparisonRow(series="published only", **base))
            continue
        for source in sorted(latest, key=lambda s: (s != HERE, s)):
            r = latest[source]
            p = r.payload
            measured = dict(base)
            measured.update(
                params=p.get("params") or base["params"],
                macs=p.get("macs") or base["macs"],
                size_mib=p.get("size_mib") or base["size_mib"],
                size_source="measured: serialized state_dict" if p.get("size_mib") else base["size_source"],
            )
            rows.append(
                ComparisonRow(
                    series=r.source_label,
                    latency_ms=p.get("median_ms"),
                    p10_ms=p.get("p10_ms"),
                    p90_ms=p.get("p90_ms"),
                    throughput_ips=p.get("throughput_ips"),
                    runs=p.get("runs"),
                    device=p.get("device"),
                    device_name=(r.env or {}).get("device_name") or (p.get("env") or {}).get("device_name"),
                    batch_size=p.get("batch_size"),
                    threads=p.get("threads"),
                    measured_at=r.created,
                    **measured,
                )
            )
    return rows

