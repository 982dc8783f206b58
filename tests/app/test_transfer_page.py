"""The Transfer page as a first-time visitor sees it offline: a full ranking on the built-in sample, a probe saved
as a checkpoint, a fine-tune whose checkpoint every page then offers."""

from __future__ import annotations

from tests.app.conftest import no_exception, open_page


def test_first_visit_ranks_the_sample_then_saves_and_fine_tunes(app):
    app.query_params["models"] = "efficientnet_lite0"
    open_page(app, "transfer")
    no_exception(app)
    table = app.dataframe[0].value
    assert len(table) == 1 and table.iloc[0, 0].endswith("EfficientNet-Lite0")
    # Real photos, classes that are not ImageNet's: the bundled backbone separates them well above chance.
    top1 = table.filter(like="linear top-1").iloc[0, 0]
    assert top1 > 60, table.to_dict("records")
    assert not [c for c in table.astype(str).values.ravel() if c == "None"]

    app.button(key="tr_save_0").click().run()
    no_exception(app)
    assert any("sidebar" in s.value for s in app.success)

    app.number_input(key="ft_epochs").set_value(1)
    app.button(key="ft_go").click().run()
    no_exception(app)
    assert not app.error, [e.value for e in app.error]
    assert app.success, "the fine-tune reported no result"
    from backbones.transfer.export import list_saved_checkpoints

    saved = list_saved_checkpoints()
    assert len(saved) == 2  # the probe and the fine-tune, both listed for every page
    assert all(len(s.classes) == len(saved[0].classes) >= 3 for s in saved)
