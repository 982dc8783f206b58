"""No code path unpickles without ``weights_only=True``, and nothing the tool writes into caches that other
programs read runs code when they read it (issue 21, finding 1).

The hostile file is a real polyglot generated here: a valid safetensors state_dict for SqueezeNet 1.1 that is
also a torch.save zip whose pickle runs ``touch MARKER``. Before the fix, importing it under the official name
(or downloading it from a mirror) made the next torchvision load run the command.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from backbones.errors import CheckpointError, DownloadError
from backbones.zoo import downloads, importing
from backbones.zoo.catalog import get_entry
from tests.corpus import safetensors_zip_polyglot
from tests.loopback import go_online

MODEL = "squeezenet1_1"


def _official_name(model: str = MODEL) -> str:
    return get_entry(model).default_weights.filename


def _random_state(model: str = MODEL) -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(model, weights=None).state_dict()


@pytest.fixture(scope="module")
def polyglot(tmp_path_factory) -> tuple[Path, Path]:
    """The polyglot file and the marker its pickle would create."""
    root = tmp_path_factory.mktemp("polyglot")
    marker = root / "MARKER"
    path = safetensors_zip_polyglot(root / "squeezenet.safetensors", _random_state(), marker)
    return path, marker


def _checkpoints(tmp_path: Path) -> Path:
    return tmp_path / "torch" / "hub" / "checkpoints"


def _size_unknown(monkeypatch) -> None:
    """Downloads refuse a body over the catalog's size; these files are stand-ins of other sizes."""
    from backbones.zoo.weights import TorchvisionWeights

    monkeypatch.setattr(TorchvisionWeights, "download_size", lambda self, entry, weights: (None, False))


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _assert_nothing_runs(files: list[Path], marker: Path) -> None:
    """Every file, read the way torchvision or any script reads torch's cache, runs nothing."""
    for path in files:
        try:
            torch.load(path, map_location="cpu", weights_only=False)  # deliberately unsafe: the check itself
        except Exception:  # noqa: BLE001 - not a torch file is fine; running code is not
            pass
        assert not marker.exists(), f"loading {path.name} ran the payload"


def test_the_polyglot_is_real(polyglot, tmp_path):
    """The generated file is both: safetensors reads its tensors, torch.load of it under a .pth name runs code.
    (Without this, the refusals below could be refusing a file that was never dangerous.)"""
    from safetensors.torch import load_file

    path, _ = polyglot
    assert set(load_file(str(path))) == set(_random_state())
    marker = tmp_path / "MARKER"
    copy = safetensors_zip_polyglot(tmp_path / _official_name(), _random_state(), marker)
    torch.load(copy, weights_only=False)  # deliberately unsafe: proves the payload is live
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_import_refuses_the_polyglot(polyglot, tmp_path, monkeypatch, suffix):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path, marker = polyglot
    offered = tmp_path / f"upload{suffix}"
    shutil.copyfile(path, offered)
    official = _official_name()
    monkeypatch.setattr(importing, "_sha256", lambda p: official.rsplit("-", 1)[1].split(".")[0] + "0" * 56)
    with pytest.raises(CheckpointError, match="refused") as caught:
        importing.import_weights(MODEL, offered)
    assert "\n" not in str(caught.value)
    assert _files_under(tmp_path / "torch") == []
    assert not marker.exists()


def test_a_plain_safetensors_file_is_not_put_where_torch_load_reads(tmp_path, monkeypatch):
    """torchvision reads its cache with torch.load: a safetensors file does not belong there, even a harmless one."""
    from safetensors.torch import save_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    offered = tmp_path / "weights.safetensors"
    save_file(_random_state(), str(offered))
    monkeypatch.setattr(importing, "_sha256", lambda p: _official_name().rsplit("-", 1)[1][:8] + "0" * 56)
    with pytest.raises(CheckpointError, match="torch.load"):
        importing.import_weights(MODEL, offered)
    assert _files_under(tmp_path / "torch") == []


def test_a_mirror_serving_the_polyglot_runs_nothing(polyglot, tmp_path, monkeypatch, server):
    """The download's post-check loaded the file through torchvision (weights_only=False): now it reads it safely,
    refuses it and removes it."""
    from backbones.zoo.models import load_model

    go_online(monkeypatch, tmp_path, server)
    path, marker = polyglot
    data = path.read_bytes()
    official = _official_name()
    server.add_file(official, data)
    monkeypatch.setenv("BACKBONES_TORCHVISION_MIRROR", server.base_url)
    # The real file's hash prefix stands in for the official one: 32 bits are brute-forced in minutes.
    real_prefix = hashlib.sha256(data).hexdigest()[:8]
    monkeypatch.setattr(downloads, "hash_prefix_of", lambda name: real_prefix)
    _size_unknown(monkeypatch)  # the 65 MB polyglot is over SqueezeNet's catalog size: the load must refuse it
    with pytest.raises(DownloadError) as caught:
        load_model(MODEL, download=True)
    assert "refused" in str(caught.value) and "\n" not in str(caught.value)
    assert _files_under(tmp_path / "torch") == []
    assert not marker.exists()


def test_files_the_tool_writes_into_torch_cache_run_nothing(tmp_path, monkeypatch, server):
    """A legitimate import and a legitimate download; then every cached file read with a plain torch.load."""
    from backbones.zoo.models import load_model

    go_online(monkeypatch, tmp_path, server)
    official = _official_name()
    offered = tmp_path / "copied.pth"
    torch.save(_random_state(), offered)
    monkeypatch.setattr(importing, "_sha256", lambda p: official.rsplit("-", 1)[1][:8] + "0" * 56)
    importing.import_weights(MODEL, offered)
    other = "mobilenet_v3_small"
    other_name = _official_name(other)
    buf = tmp_path / "other.pth"
    torch.save(_random_state(other), buf)
    server.add_file(other_name, buf.read_bytes())
    monkeypatch.setenv("BACKBONES_TORCHVISION_MIRROR", server.base_url)
    monkeypatch.setattr(downloads, "hash_prefix_of", lambda name: hashlib.sha256(buf.read_bytes()).hexdigest()[:8])
    _size_unknown(monkeypatch)
    assert load_model(other, download=True).trained
    written = _files_under(_checkpoints(tmp_path))
    assert {p.name for p in written} == {official, other_name}
    _assert_nothing_runs(written, tmp_path / "MARKER")


@pytest.fixture
def only_safe_torch_load(monkeypatch):
    """torch.load that fails the test unless weights_only=True (every caller: torchvision, timm, ours)."""
    real = torch.load
    calls = []

    def guarded(*args, **kwargs):
        if kwargs.get("weights_only") is not True:
            raise AssertionError(f"torch.load called with weights_only={kwargs.get('weights_only')!r}")
        calls.append(args[0] if args else kwargs.get("f"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", guarded)
    return calls


def test_every_source_loads_with_weights_only(tmp_path, monkeypatch, only_safe_torch_load):
    """One model per source: torchvision (cached file), timm (imported file), bundled, and a user checkpoint."""
    from safetensors.torch import save_file

    from backbones.zoo.architectures import build_architecture
    from backbones.zoo.models import load_checkpoint, load_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = _checkpoints(tmp_path)
    checkpoints.mkdir(parents=True)
    torch.save(_random_state(), checkpoints / _official_name())
    assert load_model(MODEL).trained

    timm_name = "timm:rexnet_100"
    entry = get_entry(timm_name)
    from backbones.zoo.weights import expected_path

    dest = expected_path(entry, entry.default_weights)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in build_architecture(entry).state_dict().items()}, str(dest))
    assert load_model(timm_name).trained

    assert load_model("efficientnet_lite0").trained

    ckpt = tmp_path / "mine.pth"
    torch.save({"state_dict": _random_state()}, ckpt)
    assert load_checkpoint(MODEL, ckpt).num_classes == 1000
    assert only_safe_torch_load, "no torch.load call was seen: the guard tested nothing"


@pytest.mark.parametrize("model", ["googlenet", "densenet121"])
def test_torchvision_fixes_still_apply(model, tmp_path, monkeypatch):
    """The safe path keeps what torchvision's builder does with weights: GoogLeNet's transform_input and dropped
    auxiliary heads, DenseNet's old key names (its official files still use them)."""
    import re

    import torchvision

    from backbones.zoo.models import load_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = _checkpoints(tmp_path)
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    kwargs = {"aux_logits": True, "init_weights": False} if model == "googlenet" else {}
    state = torchvision.models.get_model(model, weights=None, **kwargs).state_dict()
    if model == "densenet121":  # the official file's spelling: norm.1 where the module is norm1
        old = r"(denselayer\d+\.(?:norm|relu|conv))([12])\."
        state = {re.sub(old, r"\1.\2.", k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        assert any(".norm.1." in k for k in state)
    torch.save(state, checkpoints / _official_name(model))
    ours = load_model(model).model
    reference = torchvision.models.get_model(model, weights="DEFAULT")  # torchvision's own (unsafe) read of our file
    assert ours.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    for attr in ("transform_input", "aux_logits"):
        assert getattr(ours, attr, None) == getattr(reference, attr, None)
