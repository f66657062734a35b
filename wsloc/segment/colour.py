"""Colour features and Gaussian-mixture colour models fitted on seed pixels.

Fitting uses scikit-learn's ``GaussianMixture``; evaluating a model on every pixel is a
vectorised numpy computation from the fitted parameters (the same density as
``GaussianMixture.score_samples``, without its per-call validation overhead).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np

_LOG_2PI = float(np.log(2.0 * np.pi))

_CV2_CODES = {"lab": cv2.COLOR_RGB2LAB, "ycrcb": cv2.COLOR_RGB2YCrCb, "hsv": cv2.COLOR_RGB2HSV_FULL}


def colour_features(image: np.ndarray, space: str = "rgb") -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` -> float32 ``[H, W, 3]`` features, every channel in 0..255.

    ``space``: "rgb" (unchanged), or OpenCV's 8-bit "lab" (L*255/100, a+128, b+128),
    "ycrcb", "hsv" (HSV_FULL: hue 0..255).
    """
    if space == "rgb":
        return image.astype(np.float32)
    return cv2.cvtColor(np.ascontiguousarray(image), _CV2_CODES[space]).astype(np.float32)


@dataclass(frozen=True)
class ColourModel:
    """A Gaussian mixture over colour features, stored in the form used for scoring.

    Attributes:
        log_weights: float64 ``[C]`` log mixing weights.
        means: float64 ``[C, D]``.
        prec_chol: float64 ``[C, D, D]`` Cholesky factors of the precision matrices
            (``P`` with ``P @ P.T = inverse covariance``; sklearn's ``precisions_cholesky_``
            expanded to full matrices whatever the covariance type).
    """

    log_weights: np.ndarray
    means: np.ndarray
    prec_chol: np.ndarray

    @classmethod
    def from_sklearn(cls, gmm: GaussianMixture) -> ColourModel:
        """Convert a fitted ``GaussianMixture`` (any covariance type)."""
        c, d = gmm.means_.shape
        pc = np.asarray(gmm.precisions_cholesky_, dtype=np.float64)
        if gmm.covariance_type == "full":
            full = pc
        elif gmm.covariance_type == "tied":
            full = np.broadcast_to(pc, (c, d, d))
        elif gmm.covariance_type == "diag":
            full = pc[:, :, None] * np.eye(d)
        else:  # spherical
            full = pc[:, None, None] * np.eye(d)
        with np.errstate(divide="ignore"):
            log_weights = np.log(np.asarray(gmm.weights_, dtype=np.float64))
        return cls(log_weights, np.asarray(gmm.means_, dtype=np.float64), np.ascontiguousarray(full))

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """Log density of each row of ``x`` (float ``[N, D]``) -> float32 ``[N]``.

        Equals ``GaussianMixture.score_samples(x)`` of the fitted model up to float32
        rounding (the per-pixel products run in float32 for speed; colours are 0..255).
        """
        x = np.asarray(x, dtype=np.float32)
        d = x.shape[1]
        # y[c, n] = x_n @ P_c - mu_c @ P_c ; log N_c = -d/2 log 2pi + log det P_c - |y|^2 / 2
        shift = np.einsum("cd,cde->ce", self.means, self.prec_chol).astype(np.float32)
        y = np.matmul(x[None], self.prec_chol.astype(np.float32))
        y -= shift[:, None]
        log_det = np.log(np.diagonal(self.prec_chol, axis1=1, axis2=2)).sum(axis=1)
        const = (self.log_weights + log_det - 0.5 * d * _LOG_2PI).astype(np.float32)
        log_prob = np.einsum("cne,cne->cn", y, y)
        log_prob *= -0.5
        log_prob += const[:, None]
        top = log_prob.max(axis=0)
        log_prob -= top
        return top + np.log(np.exp(log_prob).sum(axis=0))

    def cost(self, x: np.ndarray) -> np.ndarray:
        """Negative log-likelihood (the unary data term) ``float64 [N]``."""
        return -self.log_likelihood(x)


def subsample(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Indices of a random subset of ``limit`` of ``n`` items (sorted), or None to keep all."""
    if limit is None or n <= limit:
        return None
    return np.sort(rng.choice(n, size=limit, replace=False))


def fit_colour_model(samples: np.ndarray, n_components: int = 5, covariance_type: str = "full",
                     max_iter: int = 10, init: str = "k-means++", tol: float = 1e-3,
                     reg_covar: float = 1.0, random_state: int = 0, backend: str = "sklearn") -> ColourModel:
    """Fit a Gaussian mixture to ``samples`` (float ``[N, D]``, N >= 1).

    ``backend``: "sklearn" (``GaussianMixture`` with ``init_params=init``, ``max_iter``,
    ``tol``) or "numpy" (:func:`fit_gmm_numpy`: the same model and EM updates, vectorised
    over components, k-means++ seeding; ``init`` and ``tol`` are not used, exactly
    ``max_iter`` EM iterations run). The numpy backend avoids scikit-learn's fixed
    per-call and per-iteration overhead (milliseconds), which dominates for a few hundred
    seed pixels.

    The number of components is reduced to the number of distinct samples when there are
    fewer (a mixture cannot have more distinct components than points); duplicates are
    fine because ``reg_covar`` keeps every covariance positive definite. EM stopping
    early (``max_iter``) is the intended speed/accuracy trade-off, so sklearn's
    ``ConvergenceWarning`` is silenced.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or len(samples) == 0:
        raise ValueError(f"samples must be a non-empty [N, D] array, got shape {samples.shape}")
    k = n_components
    if len(samples) < 4 * k:  # np.unique only for small sets
        k = min(k, len(np.unique(samples, axis=0)))
    elif not np.ptp(samples, axis=0).any():  # one colour
        k = 1
    if backend == "numpy":
        return fit_gmm_numpy(samples, k, covariance_type, max_iter, reg_covar, np.random.default_rng(random_state))
    from sklearn.exceptions import ConvergenceWarning  # imported here: seconds, and not needed by the numpy backend
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(n_components=k, covariance_type=covariance_type, max_iter=max_iter,
                          init_params=init, tol=tol, reg_covar=reg_covar, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(samples) == 1:  # sklearn needs two samples; duplicate (the covariance is reg_covar * I)
            samples = np.repeat(samples, 2, axis=0)
        gmm.fit(samples)
    return ColourModel.from_sklearn(gmm)


def _m_step(x: np.ndarray, resp: np.ndarray, covariance_type: str, reg_covar: float) -> ColourModel:
    """Mixture parameters from responsibilities ``resp`` ``[C, N]`` (the updates of sklearn's M-step)."""
    c, (n, d) = len(resp), x.shape
    nk = resp.sum(axis=1) + 10 * np.finfo(np.float64).eps
    means = resp @ x / nk[:, None]
    diff = x[None] - means[:, None]  # [C, N, D]
    cov = np.matmul((diff * resp[:, :, None]).transpose(0, 2, 1), diff) / nk[:, None, None]
    if covariance_type == "tied":
        cov = np.broadcast_to((cov * nk[:, None, None]).sum(0) / nk.sum(), (c, d, d))
    elif covariance_type == "diag":
        cov = np.diagonal(cov, axis1=1, axis2=2)[:, :, None] * np.eye(d)
    elif covariance_type == "spherical":
        cov = np.trace(cov, axis1=1, axis2=2)[:, None, None] / d * np.eye(d)
    cov = cov + reg_covar * np.eye(d)
    prec_chol = np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
    return ColourModel(np.log(nk / n), means, np.ascontiguousarray(prec_chol))


def _component_log_prob(model: ColourModel, x: np.ndarray) -> np.ndarray:
    """``[C, N]`` log (weight_c * N(x_n | c)) in float64."""
    y = np.matmul(x[None], model.prec_chol) - np.einsum("cd,cde->ce", model.means, model.prec_chol)[:, None]
    log_det = np.log(np.diagonal(model.prec_chol, axis1=1, axis2=2)).sum(axis=1)
    return (model.log_weights + log_det - 0.5 * x.shape[1] * _LOG_2PI)[:, None] - 0.5 * np.einsum("cne,cne->cn", y, y)


def fit_gmm_numpy(x: np.ndarray, n_components: int, covariance_type: str = "full", max_iter: int = 3,
                  reg_covar: float = 1.0, rng: np.random.Generator | None = None) -> ColourModel:
    """EM for a Gaussian mixture, vectorised over components (float64 ``x`` ``[N, D]``).

    Initialisation: k-means++ seeding (first centre uniformly at random, each next one
    drawn with probability proportional to the squared distance to the nearest centre),
    every sample assigned to its nearest centre, one M-step (as GrabCut initialises its
    GMMs). Then ``max_iter`` EM iterations with the M-step of scikit-learn's
    ``GaussianMixture`` (same ``reg_covar`` and covariance types).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    k = max(1, min(n_components, n))
    centres = [x[rng.integers(n)]]
    dist = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        cumulative = np.cumsum(dist)
        pick = (min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), n - 1)
                if cumulative[-1] > 0 else int(rng.integers(n)))
        centres.append(x[pick])
        dist = np.minimum(dist, ((x - x[pick]) ** 2).sum(1))
    centres = np.stack(centres)
    nearest = ((x[None] - centres[:, None]) ** 2).sum(-1).argmin(0)
    resp = (nearest[None] == np.arange(k)[:, None]).astype(np.float64)
    model = _m_step(x, resp, covariance_type, reg_covar)
    for _ in range(max_iter):
        log_prob = _component_log_prob(model, x)
        log_prob -= log_prob.max(axis=0)
        resp = np.exp(log_prob)
        resp /= resp.sum(axis=0)
        model = _m_step(x, resp, covariance_type, reg_covar)
    return model
