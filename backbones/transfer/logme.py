"""LogME (You et al., ICML 2021): how well frozen features explain the labels, without training anything.

    score = logme(fs.features[rows], fs.labels[rows])   # train + validation rows only; higher is better

For each class ``k`` a Bayesian linear model ``y_k = F w + noise`` with the one-hot target
``y_k`` (``(N,)``), a Gaussian prior ``w ~ N(0, α⁻¹ I_D)`` and noise precision ``β``. Its log
evidence, with ``A = α I_D + β FᵀF`` and ``m = β A⁻¹ Fᵀ y``, is::

    L(α, β) = N/2 log β + D/2 log α − N/2 log 2π − β/2 ‖F m − y‖² − α/2 ‖m‖² − 1/2 log |A|

LogME maximises ``L`` over ``α, β`` with the paper's fixed-point iteration (Algorithm 1):
``γ = Σᵢ β σᵢ² / (α + β σᵢ²)``, ``α ← γ / ‖m‖²``, ``β ← (N − γ) / ‖F m − y‖²``, where ``σᵢ`` are
the singular values of ``F``; every quantity is a sum over the ``r = rank(F)`` singular
directions, so one eigendecomposition serves all classes and all iterations. The score is
``L / N`` at the maximum, averaged over classes.

**The log-determinant.** ``A`` has eigenvalues ``α + β σᵢ²`` for the ``r`` non-zero singular
values and ``α`` for the remaining ``D − r`` directions, so this module computes the exact

    log |A| = Σᵢ₌₁ʳ log(α + β σᵢ²) + (D − r) log α

for both ``N ≥ D`` and ``N < D`` (where ``r ≤ N < D``). Implementations that sum only the
``min(N, D)`` eigenvalues drop the ``(D − r) log α`` term; with fewer samples than dimensions
their value differs from the evidence by that term and is not comparable across feature widths.
Features are used as given (float64, no centring), as in the paper; eigendecompositions larger than
512 x 512 run in float32 (half the time; see :func:`_spectrum`).
"""

from __future__ import annotations

import numpy as np

from backbones.errors import DatasetError

#: Fixed-point iterations at most, and the relative change of α and β that counts as converged.
MAX_ITERATIONS = 1000
TOLERANCE = 1e-5
#: Singular values below this fraction of the largest count as zero (numerical rank).
_RANK_EPS = 1e-10
#: Eigendecompositions larger than this run in float32 (see :func:`_spectrum`).
_FLOAT32_FROM = 512
#: Classes whose one-hot targets are built at once.
_CLASS_CHUNK = 128


def _spectrum(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(σ² (r,), basis, dual)`` over the ``r`` non-zero singular directions of ``f`` ``(N, D)``.

    ``N ≥ D``: ``basis`` is ``V`` (eigenvectors of ``FᵀF``, ``(D, r)``); ``N < D`` (``dual``): ``U`` from
    ``F Fᵀ`` (``(N, r)``). Either way the work is one ``min(N, D)``-sized eigendecomposition.
    """
    from scipy.linalg import eigh

    n, d = f.shape
    dual = n < d
    gram = f @ f.T if dual else f.T @ f
    if len(gram) > _FLOAT32_FROM:
        # The one slow step: in float32 it takes half the time. The small eigenvalues float32 blurs enter only
        # through log(α + βσ²) and βσ²/(α + βσ²), where α dominates them.
        gram = gram.astype(np.float32)
    # LAPACK's divide-and-conquer driver: ~1.5x faster than numpy's default.
    sigma2, basis = eigh(gram, driver="evd")
    sigma2, basis = sigma2.astype(np.float64), basis.astype(np.float64)
    keep = sigma2 > _RANK_EPS * max(float(sigma2.max()), 1e-300)
    return sigma2[keep], basis[:, keep], dual


def _project(f: np.ndarray, sigma2: np.ndarray, basis: np.ndarray, dual: bool, targets: np.ndarray) -> np.ndarray:
    """``z = Uᵀ Y`` ``(r, K)``; with ``V``: ``Uᵀ Y = diag(1/σ) Vᵀ Fᵀ Y``."""
    return basis.T @ targets if dual else (basis.T @ (f.T @ targets)) / np.sqrt(sigma2)[:, None]


def log_evidence(sigma2: np.ndarray, z: np.ndarray, y_norm2: np.ndarray, n: int, d: int,
                 alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``L(α, β)`` per target from the spectrum (see the module doc); arrays broadcast over targets."""
    denom = alpha + beta * sigma2[:, None]  # (r, K)
    m_tilde = beta * np.sqrt(sigma2)[:, None] * z / denom  # Vᵀm: m lies in the row space of F
    m_norm2 = (m_tilde ** 2).sum(axis=0)
    residual = ((np.sqrt(sigma2)[:, None] * m_tilde - z) ** 2).sum(axis=0) + y_norm2 - (z ** 2).sum(axis=0)
    residual = np.maximum(residual, 0.0)
    r = len(sigma2)
    log_det = np.log(denom).sum(axis=0) + (d - r) * np.log(alpha)
    return (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * residual - alpha / 2 * m_norm2 - log_det / 2)


def maximise_evidence(f: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(L (K,), α (K,), β (K,))``: the maximum log evidence of each column of ``targets`` ``(N, K)`` on ``f``."""
    f = np.asarray(f, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    sigma2, basis, dual = _spectrum(f)
    return _maximise(f.shape, sigma2, _project(f, sigma2, basis, dual, targets), (targets ** 2).sum(axis=0))


def _maximise(shape: tuple[int, int], sigma2: np.ndarray, z: np.ndarray,
              y_norm2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d = shape
    k = z.shape[1]
    alpha, beta = np.ones(k), np.ones(k)
    s = sigma2[:, None]
    for _ in range(MAX_ITERATIONS):
        denom = alpha + beta * s
        gamma = (beta * s / denom).sum(axis=0)
        m_tilde = beta * np.sqrt(s) * z / denom
        m_norm2 = np.maximum((m_tilde ** 2).sum(axis=0), 1e-300)
        residual = ((np.sqrt(s) * m_tilde - z) ** 2).sum(axis=0) + y_norm2 - (z ** 2).sum(axis=0)
        residual = np.maximum(residual, 1e-300)
        new_alpha = gamma / m_norm2
        new_beta = np.maximum(n - gamma, 1e-12) / residual
        converged = (np.abs(new_alpha - alpha) <= TOLERANCE * np.abs(alpha)).all() and \
            (np.abs(new_beta - beta) <= TOLERANCE * np.abs(beta)).all()
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    return log_evidence(sigma2, z, y_norm2, n, d, alpha, beta), alpha, beta


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of ``features`` ``(N, D)`` for integer ``labels`` ``(N,)``: the maximum log evidence per sample,
    averaged over the classes present (one-hot targets). Call it on train + validation rows only.

    Raises :class:`DatasetError` with fewer than two classes.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DatasetError("LogME needs images of at least two classes")
    f = np.asarray(features, dtype=np.float64)
    sigma2, basis, dual = _spectrum(f)
    evidence = []
    for start in range(0, len(classes), _CLASS_CHUNK):  # one-hot targets a chunk at a time: N x 1000 is large
        targets = (labels[:, None] == classes[None, start:start + _CLASS_CHUNK]).astype(np.float64)
        z = _project(f, sigma2, basis, dual, targets)
        evidence.append(_maximise(f.shape, sigma2, z, targets.sum(axis=0))[0])  # ‖one-hot‖² = its count
    return float(np.concatenate(evidence).mean() / len(labels))
