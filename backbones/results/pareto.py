"""The Pareto front of a scatter: the points no other point beats on both axes."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x and higher y are better.

    A point is on the front when no other point has x <= its x and y >= its y
    with at least one strict. Returned in increasing x.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        x, y = points[i]
        if y > best_y:
            front.append(i)
            best_y = y
    return front
