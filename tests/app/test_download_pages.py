"""Weights on demand through the pages, against the loopback server only (never the internet)."""

from __future__ import annotations

from tests.app.conftest import errors, no_exception, open_page
from tests.unit.test_weights_on_demand import TIMM_MODEL, TV_MODEL, env, timm_bytes, tv_bytes  # noqa: F401


def test_a_backbone_without_weights_shows_its_button_then_its_top5(app, env, grace_hopper):  # noqa: F811
    app.query_params["models"] = f"efficientnet_lite0,{TV_MODEL}"
    open_page(app, "predict")
    no_exception(app)
    assert not errors(app)
    buttons = [b for b in app.button if b.key == f"predict_dl_{TV_MODEL}"]
    assert buttons and "Download weights" in buttons[0].label and "MB" in buttons[0].label
    assert len(app.get("plotly_chart")) == 1  # Lite0 answers meanwhile
    buttons[0].click().run()
    no_exception(app)
    assert not errors(app), errors(app)
    assert not [b for b in app.button if b.key == f"predict_dl_{TV_MODEL}"]  # no button any more
    charts = [c.proto.spec for c in app.get("plotly_chart")]
    assert len(charts) == 2 and any("SqueezeNet" in s for s in charts)  # its top-5 appeared without more clicks
    # the sidebar now calls it ready
    assert any("SqueezeNet" in c.value and "ready" in c.value for c in app.sidebar.caption)


def test_a_failed_download_is_one_error_and_leaves_nothing(app, env, server, tmp_path):  # noqa: F811
    server.fail("404")
    app.query_params["models"] = f"efficientnet_lite0,{TIMM_MODEL}"
    open_page(app, "explain")
    [b for b in app.button if b.key == f"explain_dl_{TIMM_MODEL}"][0].click().run()
    no_exception(app)
    shown = errors(app)
    assert len(shown) == 1 and "HTTP 404" in shown[0], shown
    leftovers = [p for p in (tmp_path / "hf").rglob("*") if p.is_file() and ".incomplete" in p.name]
    assert leftovers == []


def test_offline_mode_is_said_in_the_sidebar(app, monkeypatch):
    monkeypatch.setenv("BACKBONES_OFFLINE", "1")
    app.query_params["models"] = "efficientnet_lite0,resnet50"
    open_page(app, "models")
    no_exception(app)
    assert any("Offline: 1 of 2 selected backbones have weights here" in i.value for i in app.sidebar.info)
