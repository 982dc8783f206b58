"""The catalog as ``python -m backbones list --json`` prints it (and the Models page shows it): one row per model
with its published figures, the counted MACs and each weights set's status here. Reads no model."""

from __future__ import annotations

from backbones.zoo.weights import WeightsStatus, weights_status


def _list_weights(status: WeightsStatus) -> dict:
    return {
        "name": status.name,
        "status": status.status,
        "size_bytes": status.size_bytes,
        "size_estimated": status.size_estimated,
    }


def catalog_rows(entries) -> list[dict]:
    """The ``list --json`` objects (also the Models page's table)."""
    rows = []
    for e in entries:
        rows.append(
            {
                "name": e.name,
                "display_name": e.display_name,
                "source": e.source,
                "family": e.family,
                "params": e.params,
                "macs": e.macs,
                "macs_source": e.macs_source,
                "published_macs": e.published_macs,
                "published_macs_source": e.published_macs_source,
                "file_size_mib": e.file_size_mib,
                "published_top1": e.published_top1,
                "published_top5": e.published_top5,
                "published_source": e.published_source,
                "input_size": list(e.input_size),
                "preprocessing": e.preprocessing.to_dict(),
                "weights": [_list_weights(s) for s in weights_status(e.name)],
                "default": e.default,
                "reference_cpu_ms": e.reference_cpu_ms,
                "reference_cpu_source": e.reference_cpu_source,
            }
        )
    return rows
