"""Three users at once in real Chromium: top-5 and a CAM each, on different backbones (benchmarks/load_test.py)."""

from __future__ import annotations

import pytest

from benchmarks.load_test import DEFAULT_MAX_RSS_MB, run_load

pytestmark = pytest.mark.e2e


def test_three_simultaneous_sessions_all_succeed_within_the_memory_bound(chromium_path, tmp_path, grace_hopper):
    # Its own thread: the sync Playwright of the other browser tests keeps an event loop running
    # in this one, and run_load drives async Playwright with asyncio.run.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(run_load, 3, tmp=tmp_path, photo=grace_hopper, timeout_s=900, action_timeout_s=600).result()

    failures = [s.to_dict() for s in result.sessions if not s.ok]
    assert result.succeeded == 3, failures
    # Sessions 0, 1, 2 rotate Lite0/Grad-CAM, Lite1/Saliency, Lite2/Grad-CAM: three different models.
    assert [(s.backbone, s.method) for s in result.sessions] == [
        ("efficientnet_lite0", "gradcam"),
        ("efficientnet_lite1", "saliency"),
        ("efficientnet_lite2", "gradcam"),
    ]
    assert all({"predict", "explain"} <= set(s.times) for s in result.sessions)
    # The sampler saw the server (a Python process with torch loaded is well above 100 MiB).
    assert 100 < result.peak_rss_mb < DEFAULT_MAX_RSS_MB
