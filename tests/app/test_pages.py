"""Every page through Streamlit's AppTest: default selection, a real photo, a bad file, a checkpoint."""

from __future__ import annotations

import io

import pytest
import torch

from tests.app.conftest import errors, no_exception, open_page
from tests.app.test_first_visit import cells_reading_none

PAGES = ["compare", "architecture", "predict", "explain", "evaluate", "training", "models"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_the_default_selection(app, page):
    app.run()
    no_exception(app)
    # A fresh offline machine starts with the backbones whose weights are here: the bundled Lite models.
    assert app.sidebar.multiselect[0].value == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    open_page(app, page)
    no_exception(app)
    assert app.title, f"{page} shows no title"
    assert not errors(app)
    assert not cells_reading_none(app), f"{page}: missing values must read '—'"


def test_compare_shows_published_figures_and_a_csv_download(app):
    app.query_params["models"] = "efficientnet_lite0,resnet50,mobilenet_v3_large,timm:rexnet_100,not_a_model"
    open_page(app, "compare")
    table = app.dataframe[0].value
    assert set(table["name"]) == {"efficientnet_lite0", "resnet50", "mobilenet_v3_large", "timm:rexnet_100"}
    r50 = table[table["name"] == "resnet50"].iloc[0]
    assert r50["top-1 (%)"] == pytest.approx(80.858)
    assert r50["params (M)"] == pytest.approx(25.557032)
    assert any("Measure" in b.label for b in app.button)


def test_compare_measures_and_keeps_results(app):
    app.run()
    app.sidebar.multiselect[0].set_value(["squeezenet1_1"])
    open_page(app, "compare")
    app.number_input(key="cmp_budget").set_value(0.5)
    app.button(key="cmp_measure").click().run()
    no_exception(app)
    table = app.dataframe[0].value
    row = table[table["name"] == "squeezenet1_1"].iloc[0]
    assert row["series"] == "measured here" and row["latency median (ms)"] > 0
    # a fresh session (same database) still sees it
    from streamlit.testing.v1 import AppTest

    fresh = AppTest.from_file(app._script_path, default_timeout=600)
    fresh.run()
    fresh.sidebar.multiselect[0].set_value(["squeezenet1_1"])
    open_page(fresh, "compare")
    assert fresh.dataframe[0].value.iloc[0]["series"] == "measured here"


def test_predict_uploaded_real_photo_shows_labels(app, grace_hopper):
    app.query_params["models"] = "efficientnet_lite0,resnet50"
    open_page(app, "predict")
    app.file_uploader(key="predict_upload").set_value(("grace.jpg", grace_hopper.read_bytes(), "image/jpeg"))
    app.run()
    no_exception(app)
    assert [s.value for s in app.subheader] == ["grace.jpg"]
    # resnet50 has no weights here and the tests are offline: it is shown, with what to do, not as an error
    assert any("ResNet-50" in m.value and "offline mode is on" in m.value for m in app.markdown)
    assert not errors(app)
    charts = app.get("plotly_chart")
    assert len(charts) == 1
    assert "military uniform" in charts[0].proto.spec


def test_predict_bad_file_gets_one_message_and_the_page_keeps_working(app, grace_hopper):
    open_page(app, "predict")
    app.file_uploader(key="predict_upload").set_value(
        [("notes.jpg", b"this is text", "image/jpeg"), ("grace.jpg", grace_hopper.read_bytes(), "image/jpeg")]
    )
    app.run()
    no_exception(app)
    assert len(errors(app)) == 1 and "not an image" in errors(app)[0]
    assert [s.value for s in app.subheader] == ["grace.jpg"]


def test_explain_shows_a_cam_for_the_sample_photo(app):
    open_page(app, "explain")
    no_exception(app)
    assert not errors(app)
    assert app.selectbox(key="explain_layer_efficientnet_lite0").value == "bn2"
    captions = " ".join(c.value for c in app.caption)
    # Lite0's top-1 for the Grace Hopper photo (bundled weights): the CAM explains that class by default.
    assert "Target: **academic gown** (class 400" in captions
    app.selectbox(key="explain_method").set_value("saliency").run()
    no_exception(app)
    assert not errors(app)


def test_explain_wrong_target_class_and_layer_switch(app):
    open_page(app, "explain")
    app.radio(key="explain_target_mode").set_value("any class").run()
    app.selectbox(key="explain_target_any").set_value(985).run()  # daisy
    no_exception(app)
    assert any("Target: **daisy**" in c.value for c in app.caption)
    app.selectbox(key="explain_layer_efficientnet_lite0").set_value("blocks.5").run()
    no_exception(app)
    assert not errors(app)


def test_architecture_steps_through_layers(app):
    app.run()
    app.sidebar.multiselect[0].set_value(["alexnet"])
    open_page(app, "architecture")
    no_exception(app)
    assert app.metric[0].value == "61,100,840"
    app.slider(key="arch_depth_s0").set_value(2).run()
    # The card opens on the first layer with a derivation: features.0 = conv1, not the features container.
    assert any(m.value == "64 × 55 × 55" for m in app.metric)
    assert any("23,296 params" in c.value for c in app.code)
    app.button(key="arch_next_s0").click().run()
    no_exception(app)
    assert any("features.1" in m.value for m in app.markdown)  # its ReLU
    assert not any("23,296 params" in c.value for c in app.code)


def test_models_page_loads_a_custom_checkpoint_used_everywhere(app, tmp_path, grace_hopper):
    import torchvision

    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=3)
    with torch.no_grad():
        model.classifier[-1].bias.copy_(torch.tensor([0.0, 0.0, 50.0]))  # "zebra" always wins
    buf = io.BytesIO()
    torch.save(torch.nn.DataParallel(model).state_dict(), buf)
    open_page(app, "models")
    app.text_input(key="ckpt_label").set_value("toy-zoo")
    app.selectbox(key="ckpt_arch").set_value("mobilenet_v3_small")
    app.file_uploader(key="ckpt_file").set_value(("zoo.pth", buf.getvalue(), "application/octet-stream"))
    app.file_uploader(key="ckpt_classes").set_value(("classes.txt", b"cat\ndog\nzebra\n", "text/plain"))
    app.run()
    app.button(key="ckpt_load").click().run()
    no_exception(app)
    assert not errors(app)
    assert "custom:toy-zoo" in app.sidebar.multiselect[0].value
    open_page(app, "predict")  # the checkpoint sits beside the default selection
    no_exception(app)
    assert not errors(app), errors(app)
    specs = [c.proto.spec for c in app.get("plotly_chart")]
    assert len(specs) == 4  # the three bundled Lite models of the default selection and the checkpoint
    assert any("zebra" in s and "toy-zoo" in s for s in specs)


def test_models_page_refuses_a_hostile_checkpoint(app, tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    open_page(app, "models")
    app.file_uploader(key="ckpt_file").set_value(("evil.pth", pickle.dumps({"x": Payload()}), "application/octet-stream"))
    app.run()
    app.button(key="ckpt_load").click().run()
    no_exception(app)
    assert len(errors(app)) == 1 and "refused" in errors(app)[0]
    assert app.sidebar.multiselect[0].value[0] == "efficientnet_lite0"  # nothing lost


def test_training_page_plots_the_seed_logs_and_reports_a_bad_one(app):
    open_page(app, "training")
    no_exception(app)
    table = app.dataframe[0].value
    assert any("NIN" in n for n in table["name"])
    app.file_uploader(key="train_upload").set_value(
        [("junk.txt", bytes(range(256)) * 4, "text/plain")]
    )
    app.toggle(key="train_seed").set_value(True)
    app.run()
    no_exception(app)
    assert len(errors(app)) == 1
    assert app.dataframe[0].value.shape[0] >= 3


def test_evaluate_view_on_a_zip_of_class_folders(app, grace_hopper, china_photo):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(grace_hopper, "photos/military_uniform/a.jpg")
        z.write(china_photo, "photos/palace/b.jpg")
        z.writestr("photos/palace/broken.jpg", b"\xff\xd8\xff\xe0 truncated")
    open_page(app, "evaluate")
    app.radio(key="eval_source").set_value("upload").run()
    app.file_uploader(key="eval_zip").set_value(("photos.zip", buf.getvalue(), "application/zip"))
    app.run()
    app.multiselect(key="eval_models").set_value(["efficientnet_lite0"])
    app.button(key="eval_go").click().run()
    no_exception(app)
    assert not errors(app)
    top1 = next(m for m in app.metric if m.label == "Top-1")
    assert top1.value == "50.0%"  # palace right; Grace Hopper's top-1 is "academic gown"
    assert any("1 unreadable" in e.label for e in app.expander)


def test_explain_scores_the_map_and_runs_the_sanity_check(app):
    open_page(app, "explain")
    no_exception(app)
    metrics = {m.label: m for m in app.metric}
    deletion, insertion = metrics["Deletion AUC (lower is better)"], metrics["Insertion AUC (higher is better)"]
    # Lite0's Grad-CAM on the Grace Hopper photo beats a smooth random map on both scores
    assert float(deletion.value) < float(deletion.delta.split()[-1])
    assert float(insertion.value) > float(insertion.delta.split()[-1])
    app.toggle(key="explain_sanity_on").set_value(True).run()
    no_exception(app)
    assert not errors(app)
    chart = [c.proto.spec for c in app.get("plotly_chart") if "Spearman" in c.proto.spec]
    assert chart and "classifier" in chart[0]
    assert any(b.key == "explain_pack" for b in app.get("download_button"))
