"""The English catalogue repeats a few of the libraries' own words (axis names, method descriptions) so that
they can be translated; the two must not drift apart, and every method and axis must have its entries."""

from __future__ import annotations

from backbones.results.comparison import X_AXES
from dashboard.i18n import catalogue
from viz.cam import METHODS


def test_axis_names_match_the_library():
    en = catalogue("en")
    for key, (_, label) in X_AXES.items():
        assert en[f"compare.x_axis_{key}"] == label, key


def test_method_descriptions_and_costs_match_the_library():
    en = catalogue("en")
    for name, info in METHODS.items():
        assert en[f"explain.method_description.{name}"] == info.description, name
        assert en[f"explain.method_passes.{name}"] == info.passes, name
