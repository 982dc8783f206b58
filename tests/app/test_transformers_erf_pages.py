"""Explain and Architecture for issue 24: a method that does not apply says why; the ERF panel on request."""

from __future__ import annotations

from tests.app.conftest import errors, no_exception, open_page


def test_explain_says_why_rollout_does_not_apply_to_a_cnn(app):
    app.session_state["explain_method"] = "rollout"  # chosen before the page computes anything
    open_page(app, "explain")
    no_exception(app)
    assert not errors(app)
    (warning,) = app.warning
    assert "Attention rollout does not apply to this model" in warning.value and "vision transformer" in warning.value


def test_architecture_measures_the_effective_receptive_field_on_request(app):
    open_page(app, "architecture")
    app.sidebar.multiselect[0].set_value(["efficientnet_lite0"]).run()
    no_exception(app)
    assert not any("ERF side (px)" in t.value.columns for t in app.dataframe)  # nothing measured before the button
    app.number_input(key="arch_erf_images_s0").set_value(1).run()
    app.button(key="arch_erf_go_s0").click().run()
    no_exception(app)
    assert not errors(app)
    table = next(t.value for t in app.dataframe if "ERF side (px)" in t.value.columns)
    assert "bn2" in list(table["layer"]) and (table["ERF side (px)"] > 0).all()
    assert any("trained (bundled)" in c.value and "--erf --images 1" in c.value for c in app.caption)
    assert app.selectbox(key="arch_erf_layer_s0").value == "bn2"
    assert any(c.proto.id.endswith("arch_erf_map_s0") for c in app.get("plotly_chart"))
