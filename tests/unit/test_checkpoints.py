"""Users' checkpoints: what loads, what is refused, and that refusals are clear."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import tracemalloc
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from backbones.errors import CheckpointError
from backbones.inference.predict import predict
from backbones.zoo import checkpoints
from backbones.zoo.checkpoints import read_class_names, read_state_dict
from backbones.zoo.models import load_checkpoint, load_model
from tests import corpus

FLOWERS = [f"flower {i:03d}" for i in range(102)]
WINNER = 42  # the fc bias makes this class win for every input


def biased_head(linear: nn.Linear, winner: int) -> None:
    """Zero weights and a bias that makes ``winner`` the top class with probability ~1, whatever the input."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(-8.0)
        linear.bias[winner] = 8.0


@pytest.fixture(scope="module")
def flowers_checkpoint(tmp_path_factory) -> Path:
    """The seed notes' case: ResNet-50 fine-tuned on Flowers-102, saved from nn.DataParallel."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Linear(2048, 102)
    biased_head(model.fc, WINNER)
    wrapped = nn.DataParallel(model)  # on CPU it only wraps: keys get "module."
    state = wrapped.state_dict()
    assert all(k.startswith("module.") for k in state)
    path = tmp_path_factory.mktemp("flowers") / "resnet50_flowers102.pth"
    torch.save(state, path)
    return path


def class_files(directory: Path) -> dict[str, Path]:
    txt = directory / "flowers.txt"
    txt.write_text("\n".join(FLOWERS) + "\n", encoding="utf-8")
    as_list = directory / "flowers_list.json"
    as_list.write_text(json.dumps(FLOWERS), encoding="utf-8")
    as_dict = directory / "flowers_dict.json"
    # {index: name} with string keys, out of order, as json.dump of a dict would give.
    as_dict.write_text(json.dumps({str(i): FLOWERS[i] for i in reversed(range(102))}), encoding="utf-8")
    return {"txt": txt, "json-list": as_list, "json-dict": as_dict}


@pytest.mark.parametrize("kind", ["txt", "json-list", "json-dict"])
def test_dataparallel_resnet50_flowers_checkpoint_predicts_its_own_names(
    flowers_checkpoint, tmp_path, kind, grace_hopper, flower_photo
):
    classes = class_files(tmp_path)[kind]
    loaded = load_model("resnet50", checkpoint=flowers_checkpoint, classes=classes)
    assert loaded.num_classes == 102
    assert loaded.categories == tuple(FLOWERS)
    assert loaded.weights == "checkpoint" and loaded.trained
    assert loaded.model.fc.out_features == 102
    assert not loaded.model.training
    results = predict(loaded, [Image.open(grace_hopper).convert("RGB"), Image.open(flower_photo).convert("RGB")])
    for r in results:
        assert r.topk[0].label == "flower 042"
        assert r.topk[0].index == WINNER
        assert r.topk[0].prob > 0.99  # softmax of +8 against 101 times -8
        assert all(t.label in FLOWERS for t in r.topk)


def test_checkpoint_without_class_names_gets_numbered_classes(flowers_checkpoint):
    loaded = load_checkpoint("resnet50", flowers_checkpoint)
    assert loaded.categories[:2] == ("class 0", "class 1") and loaded.num_classes == 102


@pytest.mark.parametrize("names", [FLOWERS[:101], FLOWERS + ["extra"]])
def test_wrong_number_of_class_names_is_an_error(flowers_checkpoint, tmp_path, names):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names))
    with pytest.raises(CheckpointError, match=rf"102 classes but the class-name list has {len(names)}"):
        load_model("resnet50", checkpoint=flowers_checkpoint, classes=path)


def test_class_names_file_with_gaps_or_bad_json(tmp_path):
    gaps = tmp_path / "gaps.json"
    gaps.write_text(json.dumps({"0": "a", "2": "c"}))
    with pytest.raises(CheckpointError, match="without gaps"):
        read_class_names(gaps)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2,")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_class_names(bad)
    assert read_class_names(_write(tmp_path / "crlf.txt", "a\r\n\r\nb c\r\n")) == ["a", "b c"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- containers and prefixes


@pytest.fixture(scope="module")
def squeeze5():
    """A 5-class SqueezeNet 1.1 (its classifier is a 1x1 conv), class 3 winning."""
    torch.manual_seed(1)
    model = torchvision.models.squeezenet1_1(weights=None, num_classes=5)
    with torch.no_grad():
        conv = model.classifier[1]
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0]))
    return model.eval()


def check_squeeze5(loaded, squeeze5) -> None:
    assert loaded.num_classes == 5
    assert loaded.model.classifier[1].out_channels == 5
    for (k, v), (k2, v2) in zip(loaded.model.state_dict().items(), squeeze5.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert int(loaded.model(x).argmax()) == 3


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict", "net"])
def test_state_dict_wrapped_under_a_key(tmp_path, squeeze5, wrapper):
    path = tmp_path / "ckpt.pth"
    torch.save({wrapper: squeeze5.state_dict(), "epoch": 30, "best_acc": 0.93, "optimizer": {"lr": 0.01}}, path)
    check_squeeze5(load_checkpoint("squeezenet1_1", path), squeeze5)


def test_doubly_wrapped_state_dict(tmp_path, squeeze5):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"state_dict": squeeze5.state_dict()}}, path)
    check_squeeze5(load_checkpoint("squeezenet1_1", path), squeeze5)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
def test_compile_and_dataparallel_prefixes_are_stripped(tmp_path, squeeze5, prefix):
    path = tmp_path / "ckpt.bin"
    torch.save({prefix + k: v for k, v in squeeze5.state_dict().items()}, path)
    check_squeeze5(load_checkpoint("squeezenet1_1", path), squeeze5)


def test_safetensors_checkpoint(tmp_path, squeeze5):
    path = tmp_path / "ckpt.safetensors"
    save_file({k: v.contiguous() for k, v in squeeze5.state_dict().items()}, str(path))
    check_squeeze5(load_checkpoint("squeezenet1_1", path), squeeze5)


def test_safetensors_content_under_a_pth_name_is_recognised(tmp_path, squeeze5):
    path = tmp_path / "exported.pth"
    save_file({"_orig_mod." + k: v.contiguous() for k, v in squeeze5.state_dict().items()}, str(path))
    check_squeeze5(load_checkpoint("squeezenet1_1", path), squeeze5)


# ----------------------------------------------------------------------------- hostile and broken files


class WritesMarker:
    """Unpickling this would call os.system and create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class CallsOpen:
    """Unpickling this would call builtins.open(marker, "w")."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "how",
    ["torch.save", "torch.save-legacy", "plain-pickle", "inside-state-dict", "open-builtin"],
)
def test_pickle_with_a_payload_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "evil.pth"
    payload = CallsOpen(marker) if how == "open-builtin" else WritesMarker(marker)
    if how == "torch.save":
        torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "x": payload}, path)
    elif how == "torch.save-legacy":
        torch.save({"x": payload}, path, _use_new_zipfile_serialization=False)
    elif how == "plain-pickle":
        path.write_bytes(pickle.dumps({"x": payload}, protocol=2))
    else:
        torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": payload}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint("resnet18", path)
    message = str(caught.value)
    assert "refused" in message and "nothing in it was executed" in message
    assert not marker.exists()
    if how != "open-builtin":
        assert "posix.system" in message or "os.system" in message


def test_plain_pickle_with_newer_protocol_is_refused_without_warnings(tmp_path, recwarn):
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": WritesMarker(marker)}, protocol=4))
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)
    assert not marker.exists()
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_whole_pickled_module_is_refused_with_state_dict_advice(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None), path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint("squeezenet1_1", path)
    message = str(caught.value)
    assert "refused" in message
    assert "torchvision.models.squeezenet.SqueezeNet" in message
    assert "torch.save(model.state_dict()" in message


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.98])
def test_truncated_checkpoint(tmp_path, squeeze5, fraction):
    full = tmp_path / "full.pth"
    torch.save(squeeze5.state_dict(), full)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="truncated") as caught:
        load_checkpoint("squeezenet1_1", cut)
    assert "internal miniz" not in str(caught.value)  # torch's advice is not for users


def test_empty_text_and_missing_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="empty"):
        read_state_dict(_write(tmp_path / "empty.pth", ""))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_state_dict(_write(tmp_path / "notes.pth", "epoch 1, loss 0.5\n"))
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "nowhere.pth")


def test_checkpoint_without_tensors(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, path)
    with pytest.raises(CheckpointError, match="no state_dict found.*save model.state_dict"):
        read_state_dict(path)


def test_resnet18_weights_into_resnet50_names_the_keys(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint("resnet50", path)
    message = str(caught.value)
    assert "\n" not in message
    assert "does not fit" in message and "another architecture" in message
    # ResNet-50's bottleneck has a conv3 that ResNet-18's basic block lacks; ResNet-18's 3x3
    # conv1 meets a 1x1 conv1 in ResNet-50.
    assert "missing (e.g. layer1.0.conv3.weight" in message
    assert "mismatched (e.g. layer1.0.conv1.weight (64, 64, 3, 3) vs (64, 64, 1, 1)" in message


def test_other_family_names_unexpected_keys(tmp_path):
    path = tmp_path / "squeeze.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing \(e.g. conv1.weight.*unexpected \(e.g. features.0.weight"):
        load_checkpoint("resnet18", path)


def test_safetensors_offsets_past_the_end(tmp_path):
    path = corpus.lying_safetensors(tmp_path / "lie.safetensors", lie="offsets")
    with pytest.raises(CheckpointError, match="header lies about tensor 'fc.weight'"):
        read_state_dict(path)


def test_safetensors_header_longer_than_the_file(tmp_path):
    path = corpus.lying_safetensors(tmp_path / "lie.safetensors", lie="length")
    with pytest.raises(CheckpointError, match=r"header claims 1000000000 bytes but the file has \d+"):
        read_state_dict(path)


def test_safetensors_header_not_json_or_truncated(tmp_path):
    header = b"{not json at all}"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_state_dict(bad)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x10\x00")
    with pytest.raises(CheckpointError, match="truncated safetensors"):
        read_state_dict(short)


def test_safetensors_truncated_body(tmp_path, squeeze5):
    path = tmp_path / "ok.safetensors"
    save_file({k: v.contiguous() for k, v in squeeze5.state_dict().items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="lies about tensor"):
        read_state_dict(path)


def _tiny_tensors(count: int) -> bytes:
    """The JSON entries of ``count`` empty tensors, built as bytes (json.dumps would take seconds)."""
    return b",".join(b'"t%d":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}' % i for i in range(count))


def _safetensors(path: Path, header: bytes, *, length: int | None = None, body: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + body)
    return path


HOSTILE_SAFETENSORS = {
    # name: (header, length prefix or None for the true one, what the one-line refusal says)
    "length past the end": (b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', 4096, "header claims 4096 bytes"),
    "length 2**63": (b"{}", 2**63, f"header claims {2**63} bytes"),
    "200k tiny tensors": (b"{" + _tiny_tensors(200_000) + b"}", None, "more than 100,000 tensors"),
    "2M-long shape": (b'{"a":{"dtype":"U8","shape":[' + b"0," * 2_000_000 + b'0],"data_offsets":[0,0]}}', None, "JSON values"),
    "not JSON": (b"{" + b"\xff" * 64, None, "not valid JSON"),
    "nested objects": (b'{"a":' * 50_000 + b"{}" + b"}" * 50_000, None, "nested too deeply"),
    "nested lists": (b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}", None, "nested too deeply"),
}


@pytest.mark.parametrize("case", list(HOSTILE_SAFETENSORS))
def test_hostile_safetensors_header_is_refused_before_any_tensor_is_built(tmp_path, monkeypatch, case):
    import safetensors.torch

    header, length, says = HOSTILE_SAFETENSORS[case]
    path = _safetensors(tmp_path / "hostile.safetensors", header, length=length)

    def never(*args, **kwargs):
        raise AssertionError("the safetensors library was asked to read a refused file")

    monkeypatch.setattr(safetensors.torch, "load_file", never)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=re.escape(says)) as caught:
            read_state_dict(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    # The headers are up to 12 MB; parsing the 200k-tensor one alone takes hundreds of MB.
    assert peak < 2 * len(header) + 4 * 2**20, f"{peak / 2**20:.1f} MiB"


def test_tensor_count_is_checked_exactly_after_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "MAX_SAFETENSORS_TENSORS", 3)
    # Four tensors and no __metadata__: the cheap count (objects <= limit + 2) lets it through.
    path = _safetensors(tmp_path / "four.safetensors", b"{" + _tiny_tensors(4) + b"}")
    with pytest.raises(CheckpointError, match="more than 3 tensors"):
        read_state_dict(path)
    three = _safetensors(tmp_path / "three.safetensors", b"{" + _tiny_tensors(3) + b"}")
    assert set(read_state_dict(three)) == {"t0", "t1", "t2"}


def test_header_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "MAX_SAFETENSORS_HEADER_BYTES", 1024)
    header = b'{"__metadata__":{"note":"' + b"x" * 2000 + b'"}}'
    path = _safetensors(tmp_path / "big.safetensors", header)
    with pytest.raises(CheckpointError, match=f"header of {len(header):,} bytes is over the 1,024-byte limit"):
        read_state_dict(path)


def test_corpus_checkpoints_through_the_library(tmp_path):
    items = corpus.build_corpus(tmp_path, kinds={"checkpoint"})
    assert {"payload_pickle", "truncated_checkpoint", "other_architecture", "good_checkpoint"} <= set(items)
    for item in items.values():
        if item.ok:
            loaded = load_checkpoint(item.model, item.path, classes=item.classes)
            assert loaded.categories == corpus.GOOD_CLASSES
            out = predict(loaded, [corpus.sample_image()])[0]
            assert out.topk[0].label == item.details["top"]
        else:
            with pytest.raises(CheckpointError) as caught:
                load_checkpoint(item.model, item.path, classes=item.classes)
            assert item.matches(str(caught.value)), (item.name, str(caught.value))
    assert not Path(items["payload_pickle"].details["marker"]).exists()


# ----------------------------------------------------------------------------- GoogLeNet / Inception


def _predicts_class(loaded, index: int, size: int) -> None:
    with torch.no_grad():
        out = loaded.model(torch.rand(1, 3, size, size))  # small inputs: the head does not care
    assert out.shape == (1, loaded.num_classes)
    assert int(out.argmax()) == index


@pytest.mark.parametrize("aux", [True, False])
def test_googlenet_checkpoint_with_and_without_aux_heads(tmp_path, aux):
    torch.manual_seed(2)
    model = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=True, num_classes=7)
    biased_head(model.fc, 4)
    path = tmp_path / "googlenet.pth"
    torch.save(model.state_dict(), path)
    assert any(k.startswith("aux1.") for k in model.state_dict()) == aux
    loaded = load_checkpoint("googlenet", path)
    assert loaded.num_classes == 7
    assert (loaded.model.aux1 is not None) == aux
    if aux:
        assert loaded.model.aux1.fc2.out_features == 7  # aux heads resized with the main one
    _predicts_class(loaded, 4, 96)


@pytest.mark.parametrize("aux", [True, False])
def test_inception_v3_checkpoint_with_and_without_aux_head(tmp_path, aux):
    torch.manual_seed(3)
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True, num_classes=3)
    biased_head(model.fc, 2)
    state = model.state_dict()
    if not aux:
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    loaded = load_checkpoint("inception_v3", path)
    assert loaded.num_classes == 3
    assert (loaded.model.AuxLogits is not None) == aux
    _predicts_class(loaded, 2, 128)
