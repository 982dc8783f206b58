"""The hostile corpus (tests/corpus.py) through dashboard pages: one clear message per bad file,
no traceback, and the page still works for the next action."""

from __future__ import annotations

import pytest

from tests.app.conftest import errors, no_exception, open_page
from tests.corpus import BIDI_CONTROLS, build_corpus

MIME = "application/octet-stream"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"), large=False)


def test_every_hostile_image_on_the_predict_page(app, corpus, grace_hopper):
    # The uploader (in the browser and in AppTest) only takes image endings; other names are the CLI's tests.
    allowed = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
    images = [i for i in corpus.values() if i.kind == "image" and i.path.suffix.lower() in allowed]
    assert len(images) >= 12
    open_page(app, "predict")
    app.file_uploader(key="predict_upload").set_value(
        [(i.path.name, i.path.read_bytes(), MIME) for i in images] + [("grace.jpg", grace_hopper.read_bytes(), "image/jpeg")]
    )
    app.run()
    no_exception(app)
    bad = [i for i in images if not i.ok]
    shown = errors(app)
    assert len(shown) == len(bad)
    for item in bad:
        assert any(item.path.name in m and item.matches(m) for m in shown), (item.name, shown)
    assert all("\n" not in m for m in shown)
    # every good file (odd but valid) got its own predictions, and the real photo too
    assert len([s for s in app.subheader]) == len(images) - len(bad) + 1


def test_every_hostile_checkpoint_on_the_models_page(app, corpus):
    checkpoints = [i for i in corpus.values() if i.kind == "checkpoint"]
    open_page(app, "models")
    for item in checkpoints:
        app.selectbox(key="ckpt_arch").set_value(item.model)
        app.text_input(key="ckpt_label").set_value(item.name)
        app.file_uploader(key="ckpt_file").set_value((item.path.name, item.path.read_bytes(), MIME))
        if item.classes:
            app.file_uploader(key="ckpt_classes").set_value((item.classes.name, item.classes.read_bytes(), "text/plain"))
        else:
            app.file_uploader(key="ckpt_classes").set_value(None)
        app.run()
        app.button(key="ckpt_load").click().run()
        no_exception(app)
        shown = errors(app)
        if item.ok:
            assert not shown, (item.name, shown)
        else:
            assert len(shown) == 1 and item.matches(shown[0]), (item.name, shown)
        marker = item.details.get("marker") if item.details else None
        if marker:
            from pathlib import Path

            assert not Path(marker).exists(), "the pickle payload ran"
    # the good one is loaded and selected; the bad ones left nothing behind
    selected = app.sidebar.multiselect[0].value
    assert [o for o in selected if o.startswith("custom:")] == [
        f"custom:{i.name}" for i in checkpoints if i.ok
    ]
    assert selected[0] == "efficientnet_lite0"


def test_junk_training_log_on_the_training_page(app, corpus):
    logs = [i for i in corpus.values() if i.kind == "log"]
    open_page(app, "training")
    app.file_uploader(key="train_upload").set_value([(i.path.name, i.path.read_bytes(), MIME) for i in logs])
    app.run()
    no_exception(app)
    assert len(errors(app)) == len([i for i in logs if not i.ok])
    # 20,000 headings: 50 name fields and one notice, not 20,000 fields; bidi controls gone from names.
    many = next(i for i in logs if i.details.get("runs"))
    assert any(many.details["notice"] in w.value for w in app.warning)
    names = [w.value for w in app.text_input if w.key and w.key.startswith("train_name_")
             and not w.value.startswith("demo · ")]  # the demo runs are on: the toggle was set before the upload
    assert len(names) == sum(i.details.get("runs", 1) for i in logs if i.ok)
    assert "gol.exe" in names and not any(set(BIDI_CONTROLS) & set(n) for n in names)
