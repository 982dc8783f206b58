"""Which backbone for my data: pre-logit features of a labelled dataset, probes on them, LogME, fine-tuning.

    fs = extract_features(read_dataset("flowers/"), "resnet50")      # cached on disk, memory-mapped
    report = rank_backbones(read_dataset("flowers/"), ["resnet50", "efficientnet_lite0"])

``features`` extracts and caches (:class:`FeatureSet`); ``probes`` fits the linear probe and k-NN;
``logme`` scores transferability without training; ``ranking`` puts them together per backbone.
Names are imported on first use, so ``import backbones.transfer`` stays cheap.
"""

from __future__ import annotations

from backbones.lazy import lazy_exports

_EXPORTS = {
    "FeatureSet": "features",
    "SPLIT_CODES": "features",
    "extract_features": "features",
    "PreLogits": "prelogits",
    "classifier_name": "prelogits",
    "pre_logit_module": "prelogits",
    "LinearProbe": "probes",
    "assign_splits": "probes",
    "fit_knn_probe": "probes",
    "fit_linear_probe": "probes",
    "logme": "logme",
    "TransferReport": "ranking",
    "TransferRow": "ranking",
    "rank_backbones": "ranking",
    "save_probe": "ranking",
    "save_transfer": "ranking",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
