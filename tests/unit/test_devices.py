"""One device setting: resolving ``--device``, listing devices, loading onto a device, GPU-saved checkpoints.

Runs on a CPU-only machine; the checks that need a GPU skip cleanly there (and run in
``benchmarks/gpu_check.sh`` on a lent GPU machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.serialization

from backbones.errors import DeviceError
from backbones.inference.device import (
    describe_out_of_memory,
    is_out_of_memory,
    list_devices,
    resolve_device,
)

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU_FIXTURE = Path(__file__).resolve().parents[1] / "data" / "gpu_checkpoint.pth"


def test_resolve_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("auto", types=("cpu",)) == torch.device("cpu")


def test_unknown_and_unsupported_devices():
    with pytest.raises(DeviceError, match="unknown device 'gpu0'; use cpu, cuda or mps"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="'mps' is not supported for measurements; use cpu or cuda"):
        resolve_device("mps", types=("cpu", "cuda"), purpose="measurements")


@no_gpu
def test_missing_cuda_names_what_is_available():
    for text in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError) as info:
            resolve_device(text)
        message = str(info.value)
        assert "\n" not in message and "no CUDA GPU" in message and "--device cpu" in message


@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="checks the error on a machine without Metal")
def test_missing_mps_names_what_is_available():
    with pytest.raises(DeviceError, match="available: cpu"):
        resolve_device("mps")


def test_list_devices():
    devices = list_devices()
    assert devices[0].name == "cpu" and devices[0].type == "cpu"
    assert [d.name for d in devices[1:] if d.type == "cuda"] == [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    for d in devices:
        resolve_device(d.name)  # every listed device is accepted
        assert d.name in d.label
        json.dumps(d.to_dict())


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))
    message = describe_out_of_memory("cuda:0", what="evaluating resnet50")
    assert "\n" not in message and "cuda:0" in message and "batch size" in message


def test_load_model_on_cpu(lite0):
    from backbones.zoo.models import load_model

    loaded = load_model("resnet18", weights="none", device="cpu")
    assert loaded.device == torch.device("cpu")
    assert lite0.device == torch.device("cpu")


@no_gpu
def test_load_model_on_missing_cuda_fails_before_building():
    from backbones.zoo.models import load_model

    with pytest.raises(DeviceError, match="no CUDA GPU"):
        load_model("resnet18", weights="none", device="cuda")


# --------------------------------------------------------------------------- checkpoints saved on a GPU


def save_as_if_on_gpu(obj, path: Path) -> None:
    """``torch.save`` recording every tensor's location as ``cuda:0``, as a save on a GPU does.

    The location tag is all a checkpoint keeps of the device it was saved from:
    loading this file without ``map_location`` fails on a CPU-only machine exactly
    like a real GPU checkpoint.
    """
    registry = torch.serialization._package_registry
    before = list(registry)
    torch.serialization.register_package(0, lambda _obj: "cuda:0", lambda _obj, _location: None)
    try:
        torch.save(obj, path)
    finally:
        registry[:] = before


def test_checkpoint_saved_on_gpu_loads_on_cpu(lite0, grace_hopper, tmp_path):
    from backbones.inference.images import load_image
    from backbones.inference.predict import predict
    from backbones.zoo.models import load_checkpoint

    state = {f"module.{k}": v for k, v in lite0.model.state_dict().items()}  # nn.DataParallel's prefix too
    path = tmp_path / "trained_on_gpu.pth"
    save_as_if_on_gpu({"epoch": 3, "state_dict": state}, path)
    if not torch.cuda.is_available():  # the trouble users hit: torch.load without map_location
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    loaded = load_checkpoint("efficientnet_lite0", path, device="cpu")
    assert loaded.device == torch.device("cpu")
    (pred,) = predict(loaded, [load_image(grace_hopper)], topk=5)
    (reference,) = predict(lite0, [load_image(grace_hopper)], topk=5)
    assert pred.to_dict()["topk"] == reference.to_dict()["topk"]


@pytest.mark.skipif(not GPU_FIXTURE.is_file(), reason="tests/data/gpu_checkpoint.pth (saved on a GPU) not committed")
def test_committed_gpu_checkpoint_loads_on_cpu():
    from backbones.zoo.checkpoints import read_state_dict

    # Written by benchmarks/gpu_check.sh on a real GPU: nn.DataParallel-style keys, tensors on cuda:0.
    state = read_state_dict(GPU_FIXTURE)
    assert sorted(state) == ["conv.weight", "fc.bias", "fc.weight"]
    assert all(t.device.type == "cpu" for t in state.values())
    assert torch.equal(state["conv.weight"], torch.arange(24.0).reshape(2, 3, 2, 2))
    assert torch.equal(state["fc.weight"], torch.arange(6.0).reshape(3, 2))
    assert torch.equal(state["fc.bias"], torch.zeros(3))


# --------------------------------------------------------------------------- the CLI


def _cli(module: str):
    if module == "viz":
        from viz.cli import build_parser

        return build_parser()
    from backbones.cli import build_parser

    return build_parser(modules=(module,))


@no_gpu
@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("backbones.cli.core", ["predict", "{img}"]),
        ("viz", ["cam", "{img}"]),
        ("viz", ["features", "{img}"]),
        ("backbones.cli.data", ["eval", "{data}", "--no-store"]),
    ],
)
def test_cli_device_cuda_without_gpu(module, argv, grace_hopper, tmp_path, capsys):
    from backbones.cli import run

    (tmp_path / "daisy").mkdir()
    (tmp_path / "daisy" / "a.jpg").write_bytes(grace_hopper.read_bytes())
    args = [a.format(img=grace_hopper, data=tmp_path) for a in argv] + ["--device", "cuda"]
    assert run(_cli(module), args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cuda requested but no CUDA GPU") and err.count("\n") == 1
    assert "--device cpu" in err


def test_cli_device_cpu_everywhere(grace_hopper, tmp_path, capsys):
    from backbones.cli import run

    assert run(_cli("backbones.cli.core"), ["predict", str(grace_hopper), "--device", "cpu", "--json"]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    assert pred["topk"][0]["label"] in ("military uniform", "academic gown")

    npy = tmp_path / "heat.npy"
    assert run(_cli("viz"), ["cam", str(grace_hopper), "--device", "cpu", "--npy", str(npy), "--json"]) == 0
    cam = json.loads(capsys.readouterr().out)
    assert cam["method"] == "gradcam" and 0.99 < np.load(npy).max() <= 1.0  # resampled onto the photo

    assert run(_cli("viz"), ["features", str(grace_hopper), "--device", "cpu", "--top", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["channels"]) == 2


# --------------------------------------------------------------------------- on a GPU (skipped here)


@needs_gpu
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "saliency"])
def test_maps_agree_on_cpu_and_cuda(method, grace_hopper):
    from backbones.inference.images import load_image
    from backbones.zoo.models import load_model
    from viz.cam import explain

    image = load_image(grace_hopper)
    on_cpu = explain(load_model("efficientnet_lite0", device="cpu"), image, method=method)
    on_gpu = explain(load_model("efficientnet_lite0", device="cuda"), image, method=method)
    assert on_gpu.target.index == on_cpu.target.index
    # cuDNN convolutions may use TF32 (PyTorch's default): about 3 decimal digits, hence 1% of the peak.
    np.testing.assert_allclose(on_gpu.heatmap, on_cpu.heatmap, atol=1e-2)
    assert np.corrcoef(on_gpu.heatmap.ravel(), on_cpu.heatmap.ravel())[0, 1] > 0.99
