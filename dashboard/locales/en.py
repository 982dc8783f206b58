"""English strings of the dashboard (the reference catalogue: every key lives here first)."""

STRINGS = {
    # sidebar
    "sidebar.backbones": "Backbones",
    "sidebar.picker": "Backbones to compare",
    "sidebar.picker_help": "The curated selection comes first; type to search all {n} models "
    "(torchvision, timm:…, bundled ●, your checkpoints ★).",
    "sidebar.picker_placeholder": "Type a name, e.g. resnet",
    "sidebar.offline": "Offline: {here} of {total} selected backbones have weights here.",
    "sidebar.device": "Run models on",
    "sidebar.device_help": "Predict, Explain, feature maps and Evaluate run here. Compare measures on its own device.",
    "sidebar.footer": "Published figures are cited where shown; latency is measured on this machine. "
    "Every number has a CLI twin: `python -m backbones --help`.",
    # one badge per backbone
    "badge.ready": "ready",
    "badge.download": "download {size}",
    "badge.untrained": "untrained only",
    "badge.offline": "weights not here (offline)",
    "badge.checkpoint": "your {arch} checkpoint, {n} classes",
    # downloading weights
    "weights.not_here": "no trained weights on this machine yet",
    "weights.untrained_only": "no trained weights exist: sizes, MACs, latency and layers only",
    "weights.offline_missing": "weights not here and offline mode is on: import the file on the Models page",
    "weights.download_one": "Download weights ({size})",
    "weights.download_all": "Download all {n} missing ({size})",
    "weights.starting": "Starting the download…",
    "weights.cancel": "Cancel",
    "weights.progress": "{model}: {done:.1f} of {total} MB · {rate:.1f} MB/s",
}
