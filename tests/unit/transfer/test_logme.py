"""LogME against a direct numerical maximisation of the evidence (N > D and N < D), and on labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from backbones.errors import DatasetError
from backbones.transfer.logme import _project, _spectrum, log_evidence, logme, maximise_evidence


def _evidence_directly(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """The closed form with the full D x D matrix: no SVD, the log-determinant from slogdet."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, log_det = np.linalg.slogdet(a)
    return float(n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                 - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - log_det / 2)


def _maximise_directly(f: np.ndarray, y: np.ndarray) -> float:
    starts = ([0.0, 0.0], [3.0, 1.0], [-2.0, 2.0], [5.0, 5.0])
    runs = [minimize(lambda p: -_evidence_directly(f, y, *np.exp(p)), s, method="Nelder-Mead",
                     options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 4000}) for s in starts]
    return -min(r.fun for r in runs)


def _low_rank_features(n: int, d: int, seed: int):
    # A few latent factors plus noise: alpha and beta are both identifiable even with N < D.
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    f = latent @ rng.normal(size=(3, d)) + 0.3 * rng.normal(size=(n, d))
    y = (latent[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.float64)
    return f, y


@pytest.mark.parametrize(("n", "d"), [(80, 12), (20, 50)])
def test_fixed_point_reaches_the_numerical_maximum(n, d):
    f, y = _low_rank_features(n, d, seed=n)
    evidence, alpha, beta = maximise_evidence(f, y[:, None])
    assert evidence[0] == pytest.approx(_maximise_directly(f, y), abs=1e-4)
    # And the spectral evidence is the closed form at the point it found.
    assert evidence[0] == pytest.approx(_evidence_directly(f, y, alpha[0], beta[0]), rel=1e-9)


@pytest.mark.parametrize(("n", "d"), [(30, 8), (8, 30)])
def test_spectral_evidence_equals_the_closed_form_everywhere(n, d):
    # With N < D this includes the (D - rank) log(alpha) term of the log-determinant.
    f, y = _low_rank_features(n, d, seed=3)
    sigma2, basis, dual = _spectrum(f)
    z = _project(f, sigma2, basis, dual, y[:, None])
    for alpha, beta in ((0.1, 2.0), (10.0, 0.5), (1e3, 1e2)):
        got = log_evidence(sigma2, z, np.array([y @ y]), n, d, np.array([alpha]), np.array([beta]))[0]
        assert got == pytest.approx(_evidence_directly(f, y, alpha, beta), rel=1e-9)


def test_informative_features_score_higher_than_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    f = rng.normal(size=(5, 32))[labels] + 0.5 * rng.normal(size=(200, 32))
    informative = logme(f, labels)
    shuffled = logme(f, rng.permutation(labels))
    assert informative > shuffled + 0.1


def test_one_class_is_refused():
    with pytest.raises(DatasetError, match="at least two classes"):
        logme(np.ones((4, 3)), np.zeros(4, int))


def test_the_float32_eigendecomposition_of_wide_features_gives_the_float64_score(monkeypatch):
    import backbones.transfer.logme as module

    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 150)
    f = rng.normal(size=(4, 600))[labels] + rng.normal(size=(600, 600))
    fast = logme(f, labels)  # 600 > 512: float32; square and ill-conditioned, the hardest case for it
    monkeypatch.setattr(module, "_FLOAT32_FROM", 10**9)
    assert fast == pytest.approx(logme(f, labels), rel=1e-4)
