"""Official weights files: where they are expected, what is said when they are missing, importing them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from backbones.errors import CheckpointError, WeightsUnavailableError
from backbones.zoo.models import load_model


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


@pytest.mark.parametrize("download", [True, False], ids=["offline", "no-download"])
def test_missing_torchvision_weights_say_where_and_how(torch_home, download):
    from backbones.zoo.weights import weights_status

    assert weights_status("squeezenet1_1")[0].status == "downloadable"
    with pytest.raises(WeightsUnavailableError) as caught:
        load_model("squeezenet1_1", download=download)  # tests run with BACKBONES_OFFLINE=1 (conftest)
    message = str(caught.value)
    expected = torch_home / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    assert str(expected) in message
    assert "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth" in message
    assert "python -m backbones import-weights squeezenet1_1 FILE" in message
    if download:
        assert "offline mode is on" in message
    else:
        assert "python -m backbones download squeezenet1_1" in message and "--weights none" in message


def test_import_weights_refuses_a_file_with_the_wrong_hash(torch_home, tmp_path):
    from backbones.zoo.importing import import_weights

    path = tmp_path / "squeezenet1_1-b8a52dc0.pth"  # the right name does not make it the right file
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"SHA-256 starts [0-9a-f]{8}, but squeezenet1_1-b8a52dc0.pth starts b8a52dc0"):
        import_weights("squeezenet1_1", path)
    assert not (torch_home / "hub" / "checkpoints").exists() or not any((torch_home / "hub" / "checkpoints").iterdir())


@pytest.fixture
def official_hash(monkeypatch):
    """Make chosen files hash like the official SqueezeNet 1.1 file (prefix b8a52dc0)."""
    import backbones.zoo.importing as importing

    real = importing._sha256
    blessed: set[Path] = set()

    def sha256(path):
        digest = real(path)
        return "b8a52dc0" + digest[8:] if Path(path).resolve() in blessed else digest

    monkeypatch.setattr(importing, "_sha256", sha256)
    return lambda path: blessed.add(Path(path).resolve())


def test_import_weights_refuses_a_file_that_does_not_fit(torch_home, tmp_path, official_hash):
    from backbones.zoo.importing import import_weights

    path = tmp_path / "download.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    official_hash(path)
    with pytest.raises(CheckpointError, match="does not fit"):
        import_weights("squeezenet1_1", path)
    checkpoints = torch_home / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_import_weights_round_trip_loads_offline(torch_home, tmp_path, official_hash):
    from backbones.zoo.importing import import_weights
    from backbones.zoo.weights import weights_status

    torch.manual_seed(5)
    original = torchvision.models.squeezenet1_1(weights=None)
    path = tmp_path / "download.pth"
    torch.save(original.state_dict(), path)
    official_hash(path)

    dest = import_weights("squeezenet1_1", path)
    assert dest == torch_home / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    assert dest.read_bytes() == path.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no .partial left behind
    status = weights_status("squeezenet1_1")[0]
    assert (status.name, status.status, status.path) == ("IMAGENET1K_V1", "cached", str(dest))

    loaded = load_model("squeezenet1_1")  # offline: download_url_to_file would raise
    assert loaded.weights == "IMAGENET1K_V1" and loaded.trained
    assert loaded.num_classes == 1000
    for (k, v), (k2, v2) in zip(loaded.model.state_dict().items(), original.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_import_weights_refuses_bundled_and_none(tmp_path):
    from backbones.zoo.importing import import_weights

    path = tmp_path / "x.pth"
    path.write_text("x")
    with pytest.raises(CheckpointError, match="bundled"):
        import_weights("efficientnet_lite0", path)
    with pytest.raises(CheckpointError, match="not 'none'"):
        import_weights("squeezenet1_1", path, weights="none")
    with pytest.raises(CheckpointError, match="no such file"):
        import_weights("squeezenet1_1", tmp_path / "nowhere.pth")
