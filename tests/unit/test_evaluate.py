"""Dataset evaluation with the bundled EfficientNet-Lite0 and a hand-made 3-class checkpoint.

The datasets are built here from the three real photos, with flips and crops to
make several images per class. What the model predicts for each was looked at
once (efficientnet_lite0, bundled weights):

- grace_hopper: original -> academic gown (military uniform 3rd); mirrored ->
  military uniform; centre crop (10% off each side) -> academic gown, military
  uniform not in the top 5.
- china: original, mirrored, mirrored top-left crop -> palace.
- flower: original, mirrored, centre crop, mirrored top-left crop -> daisy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps

from backbones.data.classes import match_classes
from backbones.data.datasets import Dataset, Sample, read_dataset, select_samples
from backbones.data.evaluation import OTHER, evaluate_dataset, save_evaluation
from backbones.errors import CancelledError, DatasetError


def _crop(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((w // 10, h // 10, w - w // 10, h - h // 10))


def _crop_flip(img: Image.Image) -> Image.Image:
    w, h = img.size
    return ImageOps.mirror(img.crop((0, 0, int(w * 0.8), int(h * 0.8))))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, grace_hopper, china_photo, flower_photo) -> Path:
    """An ImageFolder dataset: 10 images in 3 classes, one of them mislabelled, plus files to ignore or skip."""
    root = tmp_path_factory.mktemp("data") / "photos"
    hopper, china, flower = (Image.open(p).convert("RGB") for p in (grace_hopper, china_photo, flower_photo))
    layout = {
        "military_uniform": {"hopper.jpg": grace_hopper, "hopper_flip.png": ImageOps.mirror(hopper),
                             "hopper_crop.png": _crop(hopper)},
        "palace": {"china.jpg": china_photo, "china_flip.png": ImageOps.mirror(china),
                   "china_cropflip.png": _crop_flip(china),
                   "flower_flip.png": ImageOps.mirror(flower)},  # deliberately mislabelled
        "daisy": {"flower.jpg": flower_photo, "flower_crop.png": _crop(flower),
                  "flower_cropflip.png": _crop_flip(flower)},
    }
    for folder, files in layout.items():
        (root / folder).mkdir(parents=True)
        for name, content in files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, root / folder / name)
            else:
                content.save(root / folder / name)
    (root / "palace" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10)
    (root / "daisy" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "daisy" / "notes.txt").write_text("picked in May")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def three_class_checkpoint(tmp_path_factory, lite0) -> tuple[Path, Path]:
    """EfficientNet-Lite0 whose classifier keeps only ImageNet's military uniform, palace and daisy rows."""
    folder = tmp_path_factory.mktemp("checkpoint")
    state = {k: v.clone() for k, v in lite0.model.state_dict().items()}
    cats = lite0.categories
    rows = [cats.index("military uniform"), cats.index("palace"), cats.index("daisy")]
    state["classifier.weight"] = state["classifier.weight"][rows].clone()
    state["classifier.bias"] = state["classifier.bias"][rows].clone()
    torch.save(state, folder / "three.pth")
    (folder / "classes.txt").write_text("uniform\ntemple\nflower\n")
    return folder / "three.pth", folder / "classes.txt"


@pytest.fixture(scope="module")
def folder_result(lite0, photos):
    calls = []
    result = evaluate_dataset(lite0, photos, batch_size=4, progress=lambda d, t, m: calls.append((d, t, m)))
    return result, calls


# --------------------------------------------------------------------------- ImageNet model, ImageFolder


def test_imagefolder_accuracy(folder_result, photos):
    result, _ = folder_result
    assert (result.model, result.dataset, result.weights) == ("efficientnet_lite0", "photos", "bundled")
    assert result.labels == ("daisy", "military_uniform", "palace")
    assert result.n == 10 and result.skipped == 1 and result.excluded == 0
    assert result.top1 == pytest.approx(7 / 10)
    assert result.top5 == pytest.approx(8 / 10)
    assert result.top1_error == pytest.approx(3 / 10)
    assert dict(result.per_class) == pytest.approx({"daisy": 1.0, "military_uniform": 1 / 3, "palace": 3 / 4})
    assert dict(result.per_class_n) == {"daisy": 3, "military_uniform": 3, "palace": 4}
    # Columns: the dataset's classes, then every other ImageNet class.
    assert result.confusion_columns == ("daisy", "military_uniform", "palace", OTHER)
    assert result.confusion == ((3, 0, 0, 0), (0, 1, 0, 2), (1, 0, 3, 0))
    assert {m.label: m.how for m in result.matches} == {"daisy": "exact", "military_uniform": "exact", "palace": "exact"}


def test_imagefolder_misclassified_and_skipped(folder_result, photos):
    result, _ = folder_result
    wrong = {Path(m.path).name: m for m in result.misclassified}
    assert set(wrong) == {"hopper.jpg", "hopper_crop.png", "flower_flip.png"}
    assert wrong["flower_flip.png"].label == "palace" and wrong["flower_flip.png"].predicted == "daisy"
    assert wrong["hopper.jpg"].in_top5 and "military uniform" in [g.label for g in wrong["hopper.jpg"].top5]
    assert not wrong["hopper_crop.png"].in_top5
    assert len(wrong["hopper.jpg"].top5) == 5
    probs = [g.prob for g in wrong["hopper.jpg"].top5]
    assert probs == sorted(probs, reverse=True)
    (skipped,) = result.skipped_files
    assert skipped.path == str(photos / "palace" / "broken.jpg")
    assert "broken.jpg" in skipped.reason
    assert result.images_per_second > 0 and result.elapsed_s > 0


def test_progress_reports_every_batch(folder_result):
    _, calls = folder_result
    # 11 image files (one unreadable) in batches of 4.
    assert [(d, t) for d, t, _ in calls] == [(0, 11), (4, 11), (8, 11), (11, 11)]
    assert "top-1 so far" in calls[-1][2]


def test_result_dict_fields(folder_result):
    result, _ = folder_result
    d = result.to_dict()
    required = {"model", "dataset", "n", "skipped", "top1", "top5", "per_class", "confusion", "labels"}
    assert required <= set(d)
    assert d["per_class"]["palace"] == 0.75
    assert d["confusion"][1] == [0, 1, 0, 2]
    assert d["labels"] == ["daisy", "military_uniform", "palace"]
    assert d["misclassified"][0].keys() >= {"path", "label", "predicted", "top5"}
    assert d["skipped_files"][0]["path"].endswith("broken.jpg")
    json.dumps(d)


def test_cancellation(lite0, photos):
    calls = []
    with pytest.raises(CancelledError, match="after 4 of 11"):
        evaluate_dataset(lite0, photos, batch_size=4, progress=lambda d, t, m: calls.append(d),
                         should_stop=lambda: len(calls) >= 2)
    assert calls == [0, 4]


# --------------------------------------------------------------------------- ImageNet model, CSV


def test_csv_with_header_names_unmatched_and_bad_rows(lite0, photos, tmp_path):
    csv_path = tmp_path / "lists" / "holiday.csv"
    csv_path.parent.mkdir()
    rel = "../../" + photos.parent.name + "/photos"
    csv_path.write_text(
        "filename,class\n"
        f"{photos}/military_uniform/hopper_flip.png,Military Uniform\n"
        f"{photos}/palace/china.jpg,palace\n"
        f"{photos}/daisy/flower.jpg,daisy\n"
        f"{photos}/daisy/flower_crop.png,daisy\n"
        f"{photos}/military_uniform/hopper_crop.png,Military Uniform\n"
        f"{photos}/palace/china_flip.png,cat\n"
        "only-one-column\n"
        f"{rel}/daisy/not_there.jpg,daisy\n"
    )
    result = evaluate_dataset(lite0, csv_path)
    assert result.dataset == "holiday"
    assert result.labels == ("Military Uniform", "daisy", "palace")
    assert result.n == 5 and result.top1 == pytest.approx(4 / 5) and result.top5 == pytest.approx(4 / 5)
    assert result.excluded == 1
    (unmatched,) = result.unmatched
    assert unmatched.label == "cat" and unmatched.images == 1 and "ambiguous" in unmatched.note
    assert "tabby" in unmatched.note or "Persian cat" in unmatched.note
    assert result.skipped == 2
    reasons = [s.reason for s in result.skipped_files]
    assert any("line 8" in r for r in reasons) and "no such file" in reasons


def test_relative_paths_resolve_against_the_csv_folder(photos):
    csv_path = photos / "list.csv"
    csv_path.write_text("daisy/flower.jpg,daisy\npalace/china.jpg,palace\n")
    try:
        ds = read_dataset(csv_path)
    finally:
        csv_path.unlink()
    assert ds.kind == "csv" and ds.classes == ("daisy", "palace")
    assert ds.samples[0] == Sample(str(photos / "daisy" / "flower.jpg"), "daisy")


# --------------------------------------------------------------------------- a custom checkpoint


def test_three_class_checkpoint_on_seed_style_csv(three_class_checkpoint, photos, tmp_path):
    from backbones.zoo.models import load_model

    weights, classes = three_class_checkpoint
    loaded = load_model("efficientnet_lite0", checkpoint=weights, classes=classes)
    assert loaded.categories == ("uniform", "temple", "flower")
    # The seed notes' animal_data.csv: no header, path,label-index, Windows separators.
    shutil.copytree(photos, tmp_path / "animals")
    (tmp_path / "animal_data.csv").write_text(
        "animals\\military_uniform\\hopper.jpg,0\n"
        "animals/military_uniform/hopper_crop.png,0\n"
        "animals/palace/china.jpg,1\n"
        "animals/palace/china_flip.png,1\n"
        "animals/daisy/flower.jpg,2\n"
        "animals/palace/flower_flip.png,1\n"  # a daisy labelled temple
    )
    result = evaluate_dataset(loaded, tmp_path / "animal_data.csv", batch_size=8)
    assert result.model == "three" and result.weights == "checkpoint" and result.architecture == "efficientnet_lite0"
    assert result.labels == ("uniform", "temple", "flower")
    assert result.n == 6 and result.skipped == 0
    assert result.top1 == pytest.approx(5 / 6)
    assert result.topk == 3 and result.top5 == 1.0  # three classes: top-k is all of them
    assert dict(result.per_class) == pytest.approx({"uniform": 1.0, "temple": 2 / 3, "flower": 1.0})
    assert result.confusion_columns == ("uniform", "temple", "flower")  # no "other": the model has no other class
    assert result.confusion == ((2, 0, 0), (0, 2, 1), (0, 0, 1))
    assert [m.how for m in result.matches] == ["index", "index", "index"]
    assert result.notes == ()

    # The same checkpoint on folders named after its classes; one folder matches nothing.
    root = tmp_path / "named"
    for folder, src in (("Uniform", "military_uniform/hopper_flip.png"), ("temple", "palace/china.jpg"),
                        ("flowers", "daisy/flower_crop.png"), ("zebra", "daisy/flower.jpg")):
        (root / folder).mkdir(parents=True)
        shutil.copyfile(photos / src, root / folder / Path(src).name)
    result = evaluate_dataset(loaded, root)
    assert result.labels == ("Uniform", "flowers", "temple")
    assert result.top1 == 1.0 and result.n == 3 and result.excluded == 1
    assert [(u.label, u.images) for u in result.unmatched] == [("zebra", 1)]
    assert {m.label: m.how for m in result.matches}["flowers"] == "singular"


# --------------------------------------------------------------------------- class matching (no model run)


def test_match_imagenet_names():
    from backbones.zoo.catalog import imagenet_categories

    cats = imagenet_categories()
    got = match_classes(["military_uniform", "Daisies", "tabby_cat", "n01440764", "uniform", "cat", "zzz", 985],
                        cats)
    assert got["military_uniform"].model_labels == ("military uniform",)
    assert (got["Daisies"].how, got["Daisies"].model_labels) == ("singular", ("daisy",))
    assert (got["tabby_cat"].how, got["tabby_cat"].model_labels) == ("synonym", ("tabby",))
    assert (got["n01440764"].how, got["n01440764"].indices) == ("wnid", (0,))
    assert (got["uniform"].how, got["uniform"].model_labels) == ("contains", ("military uniform",))
    assert not got["cat"].matched and "ambiguous" in got["cat"].note
    assert not got["zzz"].matched
    assert (got[985].how, got[985].label) == ("index", "daisy")
    mapped = match_classes(["cat"], cats, class_map={"cat": ["tabby", "Persian cat", 285]})
    assert mapped["cat"].how == "map" and len(mapped["cat"].indices) == 3
    with pytest.raises(DatasetError, match="class map"):
        match_classes(["cat"], cats, class_map={"cat": "no such class"})


def test_integer_labels_with_an_imagenet_model_are_noted(lite0, flower_photo, tmp_path):
    shutil.copyfile(flower_photo, tmp_path / "f.jpg")
    (tmp_path / "l.csv").write_text("f.jpg,985\n")
    result = evaluate_dataset(lite0, tmp_path / "l.csv")
    assert result.top1 == 1.0 and result.labels == ("daisy",)
    assert "ImageNet class indices" in result.notes[0]


def test_limit_spreads_over_classes(photos):
    ds = read_dataset(photos)
    picked = select_samples(ds, 3)
    assert sorted(s.label for s in picked) == ["daisy", "military_uniform", "palace"]
    assert select_samples(ds, None) == ds.samples


# --------------------------------------------------------------------------- bad datasets


def test_folder_dataset_reading(photos):
    ds = read_dataset(photos)
    assert ds.kind == "folder" and ds.classes == ("daisy", "military_uniform", "palace")
    names = sorted(Path(s.path).name for s in ds.samples)
    assert ".DS_Store" not in names and "notes.txt" not in names and "x.png" not in names
    assert len(ds.samples) == 11  # broken.jpg is found; it is skipped when it fails to decode


def _file(name: str, content: bytes | str):
    def make(folder: Path) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    return make


def _empty_dir(folder: Path) -> Path:
    (folder / "empty").mkdir()
    return folder / "empty"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "no such file or directory"),
        (_empty_dir, "no images found"),
        (lambda p: _file("loose/a.jpg", b"x")(p).parent, "no class sub-folders"),
        (_file("a.csv", ""), "empty CSV"),
        (_file("b.csv", "justonecolumn\nanother\n"), "line 1: expected path,label"),
        (_file("c.csv", "x.jpg,cat\ny.jpg,dog\n"), "none of the 2 listed files exist"),
        (_file("d.csv", b"\x00\x01\x02binary"), "binary"),
        (_file("e.csv", "a.jpg,-1\n"), "negative class index"),
        (_file("model.pth", b"PK"), "not a dataset"),
    ],
)
def test_bad_datasets(tmp_path, make, message):
    with pytest.raises(DatasetError, match=message) as info:
        read_dataset(make(tmp_path))
    assert "\n" not in str(info.value)


def test_no_matching_class_and_nothing_readable(lite0, tmp_path):
    (tmp_path / "foo").mkdir()
    (tmp_path / "foo" / "a.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="none of its 1 classes match"):
        evaluate_dataset(lite0, tmp_path)
    ds = Dataset("junk", str(tmp_path), "folder", (Sample(str(tmp_path / "foo" / "a.jpg"), "daisy"),))
    with pytest.raises(DatasetError, match="no image could be read"):
        evaluate_dataset(lite0, ds)
    with pytest.raises(DatasetError, match="batch size"):
        evaluate_dataset(lite0, ds, batch_size=0)


# --------------------------------------------------------------------------- results store and CLI


def test_save_evaluation_in_the_store(folder_result, tmp_path):
    store_module = pytest.importorskip("backbones.results.store")
    store = store_module.ResultsStore(tmp_path / "results.sqlite")
    result, _ = folder_result
    row = save_evaluation(result, store)
    (stored,) = store.query(kind="evaluation")
    assert stored.id == row and stored.model == "efficientnet_lite0" and stored.source == "here"
    assert stored.payload["dataset"] == "photos" and stored.payload["metric"] == "accuracy on photos"
    assert stored.payload["top1"] == pytest.approx(0.7) and stored.payload["misclassified_count"] == 3
    assert "misclassified" not in stored.payload


def test_cli_eval_json(photos, tmp_path, monkeypatch, capsys):
    from backbones.cli import build_parser, run

    monkeypatch.setenv("BACKBONES_RESULTS_DB", str(tmp_path / "cli.sqlite"))
    parser = build_parser(modules=("backbones.cli.data",))
    code = run(parser, ["eval", str(photos), "--model", "efficientnet_lite0", "--batch-size", "8", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    out = json.loads(captured.out)
    assert out["n"] == 10 and out["skipped"] == 1
    assert out["top1"] == pytest.approx(0.7) and out["top5"] == pytest.approx(0.8)
    assert out["labels"] == ["daisy", "military_uniform", "palace"]
    assert out["confusion"] == [[3, 0, 0, 0], [0, 1, 0, 2], [1, 0, 3, 0]]
    assert "[11/11]" in captured.err  # progress goes to stderr
    store_module = pytest.importorskip("backbones.results.store")
    assert len(store_module.ResultsStore(tmp_path / "cli.sqlite").query(kind="evaluation")) == 1

    code = run(parser, ["eval", str(photos), "--limit", "3", "--no-store"])
    out = capsys.readouterr().out
    assert code == 0 and "top-1 accuracy" in out and "skipped" in out  # broken.jpg is among the 3
    assert len(store_module.ResultsStore(tmp_path / "cli.sqlite").query(kind="evaluation")) == 1

    assert run(parser, ["eval", str(tmp_path / "nowhere"), "--no-store"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_unpack_uploaded_zip(photos, tmp_path):
    import io
    import zipfile

    from backbones.data.archives import unpack_dataset

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for f in sorted(photos.rglob("*")):
            if f.is_file():
                z.write(f, "holiday/" + f.relative_to(photos).as_posix())
        z.writestr("__MACOSX/holiday/._daisy", "resource fork")
    folder = unpack_dataset(buffer.getvalue(), dest=tmp_path / "x" / "unpacked")
    assert folder == tmp_path / "x" / "unpacked" / "holiday"
    assert not (tmp_path / "x" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    ds = read_dataset(folder)
    assert ds.classes == ("daisy", "military_uniform", "palace") and len(ds.samples) == 11
    with pytest.raises(DatasetError, match="not a zip archive"):
        unpack_dataset(b"PK but not really", dest=tmp_path / "y")


def test_server_paths_are_neither_stored_nor_exported(photos, tmp_path, lite0):
    import json as _json

    from backbones.results.store import ResultsStore

    store = ResultsStore(tmp_path / "r.sqlite")
    result = evaluate_dataset(lite0, photos, limit=3)
    save_evaluation(result, store=store)
    assert "dataset_path" not in store.query(kind="evaluation")[0].payload
    # a row stored by an older version still carries the path: the export drops it
    old = result.to_store_payload() | {"dataset_path": str(photos)}
    store.add("evaluation", result.model, old)
    out = tmp_path / "export.json"
    store.export_json(out)
    text = out.read_text()
    assert str(photos) not in text and "dataset_path" not in text
    assert len(_json.loads(text)["results"]) == 2
