"""A first visit: Compare opens on the classic comparison with published figures, every table reads "—" for
missing values, and Architecture's step-through starts on a layer with a derivation, agreeing with Compare."""

from __future__ import annotations

import pytest

from backbones.zoo.catalog import CURATED
from tests.app.conftest import no_exception, open_page


def cells_reading_none(at) -> list[str]:
    """Every table cell of the page that would print as "None" (or "nan"), as ``table[row, column]``."""
    bad = []
    for i, frame in enumerate(at.dataframe):
        table = frame.value
        for column in table.columns:
            for row, value in enumerate(table[column]):
                if value is None or str(value) in ("None", "nan", "NaN", "<NA>"):
                    bad.append(f"table {i}[{row}, {column!r}]")
    return bad


def number(cell) -> float | None:
    """A table cell as a number: styled columns with a missing value are text ("1,234.50", "—")."""
    if isinstance(cell, str):
        return None if cell == "—" else float(cell.replace(",", ""))
    return float(cell)


def test_a_fresh_offline_session_compares_the_curated_backbones_with_published_figures(app):
    open_page(app, "compare")
    no_exception(app)
    table = app.dataframe[0].value
    assert list(table["name"]) == list(CURATED)  # nothing measured: one "published only" row each
    # Published figures need no weights: torchvision's meta and timm's tables, offline.
    alexnet = table[table["name"] == "alexnet"].iloc[0]
    assert number(alexnet["top-1 (%)"]) == pytest.approx(56.522) and number(alexnet["top-5 (%)"]) == pytest.approx(79.066)
    assert number(alexnet["params (M)"]) == pytest.approx(61.10084)
    assert number(alexnet["size (MiB)"]) == pytest.approx(233.09)  # torchvision's _file_size, 233.087
    convnext = table[table["name"] == "convnext_tiny"].iloc[0]
    assert number(convnext["GMACs"]) == pytest.approx(4.456, abs=0.001)  # not torchinfo's 0.322
    assert all(number(v) > 50 for v in table["top-1 (%)"])
    # The pages that need trained weights keep the sidebar selection: the bundled models that work offline.
    assert app.sidebar.multiselect[0].value == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert app.button(key="cmp_measure").label.startswith("Measure")
    assert not cells_reading_none(app)


def test_the_step_through_opens_on_alexnets_first_conv_and_agrees_with_compare(app):
    app.query_params["models"] = "alexnet"
    open_page(app, "compare")
    gmacs = number(app.dataframe[0].value.iloc[0]["GMACs"])
    open_page(app, "architecture")
    no_exception(app)
    card = [c.value for c in app.code]
    assert any("Conv2d 3->64, k11 s4 p2: 64*(3*11*11)+64 = 23,296 params" in c for c in card), card
    assert any(m.value == "23,296" for m in app.metric)  # the card's parameters
    total = next(m.value for m in app.metric if m.value.endswith(" G"))
    assert total == f"{gmacs:.3f} G" == "0.714 G"
    assert not cells_reading_none(app)
