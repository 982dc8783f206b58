"""Run by test_features under ``torchrun``: extract features of DATASET with the bundled Lite0, rank 0 saves OUT.npz."""

from __future__ import annotations

import sys

import numpy as np


def main(dataset: str, out: str, cache: str) -> None:
    from backbones.data.datasets import read_dataset
    from backbones.data.distributed import process_group
    from backbones.transfer.features import extract_features

    with process_group("cpu") as (_device, launch):
        fs = extract_features(read_dataset(dataset), "efficientnet_lite0", device="cpu", batch_size=2, workers=0,
                              cache_dir=cache, progress=lambda d, t, m: print(m, file=sys.stderr))
        if launch is None or launch.is_main:
            np.savez(out, features=np.asarray(fs.features), labels=fs.labels, split=fs.split,
                     paths=np.array(fs.paths), skipped=np.array([s.path for s in fs.skipped]))


if __name__ == "__main__":
    main(*sys.argv[1:4])
