"""viz.targets: class indices, labels and substrings, and errors that say what would work."""

from __future__ import annotations

import pytest

from viz.targets import TargetError, resolve_target


def test_targets_by_index_label_and_substring(lite0):
    assert resolve_target(lite0, None) is None
    assert resolve_target(lite0, 652) == 652
    assert resolve_target(lite0, "652") == 652
    assert resolve_target(lite0, "Military Uniform") == 652
    assert resolve_target(lite0, "military_uniform") == 652
    assert lite0.categories[resolve_target(lite0, "daisy")] == "daisy"
    assert lite0.categories[resolve_target(lite0, "uniform")] == "military uniform"  # the only label containing it


def test_bad_targets_say_what_would_work(lite0):
    with pytest.raises(TargetError, match=r"0\.\.999"):
        resolve_target(lite0, 1000)
    with pytest.raises(TargetError, match=r"0\.\.999"):
        resolve_target(lite0, -1)
    with pytest.raises(TargetError, match="military uniform \\(652\\)"):
        resolve_target(lite0, "militery unifrom")
    with pytest.raises(TargetError, match="matches .* classes: .*terrier"):
        resolve_target(lite0, "terrier")
    with pytest.raises(TargetError):
        resolve_target(lite0, "")
