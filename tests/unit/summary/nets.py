"""Checks and a tiny hand-built net shared by the summary tests.

Receptive-field arithmetic used in the comments (seed notes: F(i) = (F(i+1) - 1) x stride + ksize,
written forwards): a window of size k, stride s, dilation d turns (rf, jump) into
(rf + d*(k-1)*jump, jump*s); where paths merge the larger field wins.
"""

from __future__ import annotations

from torch import nn

from backbones.summary import ModelSummary


def rf(summary: ModelSummary, name: str) -> tuple[int | None, int | None]:
    row = summary.find(name)
    return row.receptive_field, row.jump


def check_consistent(s: ModelSummary) -> None:
    """Rows add up to the totals: own params over all rows, MACs over the leaves."""
    assert sum(r.params for r in s.layers) == s.total_params
    assert sum(r.mult_adds for r in s.leaves()) == s.total_mult_adds
    assert s.layers[0].name == "" and s.layers[0].depth == 0 and s.layers[0].parent is None
    assert s.layers[0].mult_adds == s.total_mult_adds
    assert s.layers[0].params_total == s.total_params


class Residual(nn.Module):
    """Two paths from the input, registered in the opposite order to the one they run in.

    ``deep`` (two 3x3 convs: rf 5) is registered first but runs second; ``short`` (1x1: rf 1) is
    registered last. Their sum must carry rf 5: the larger path, not the last module.
    """

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(4, 4, 3, padding=1)  # registered first, runs last
        self.deep = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.pool = nn.MaxPool2d(2)
        self.short = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.short(x) + self.deep(x)  # max(1, 5) = 5, jump 1
        y = self.pool(y)  # 5 + (2-1)*1 = 6, jump 2 (it would be 2 if the 1x1 path won)
        return self.head(y)  # 6 + (3-1)*2 = 10, jump 2
