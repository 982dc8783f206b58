"""Environment: the fingerprint stored with every measurement (versions, hardware, settings, time).

Numbers measured on different machines or library versions are not comparable; the
results store keeps this dictionary beside each result so that they can be told apart.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone

import torch


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``, ``sysctl`` on macOS, else ``platform``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
            ).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def collect_env(
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    batch_size: int | None = None,
    input_size: Sequence[int] | None = None,
    **extra,
) -> dict:
    """The environment fingerprint stored with each result: versions, hardware, settings, time."""
    import torchvision

    from backbones.results.store import machine_label

    dev = torch.device(device)
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:  # timm models are optional for torchvision-only users
        timm_version = None
    env = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm_version,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "batch_size": batch_size,
        "input_size": list(input_size) if input_size is not None else None,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "machine": machine_label(),
    }
    env.update(extra)
    return env
