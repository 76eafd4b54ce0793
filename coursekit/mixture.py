"""A mixture of independent categoricals over grey levels, fitted by EM (Chapter 1).

The simplest generative model of the course with an exact likelihood: each image ``x`` of ``D``
pixels with values in ``0 .. L-1`` is drawn by first picking a component ``k`` with probability
``pi_k`` and then every pixel independently from its own categorical ``theta[k, d, :]``:

    p(x) = sum_k pi_k prod_d theta[k, d, x_d]                                        (1.1)

Chapter 1 uses it to measure how the amount and the cleanliness of the training data change the
held-out negative log-likelihood (nats per image), which compares directly with the course's
anchors on the 8x8 digits (uniform ``64 ln 17 = 181.3``; a VAE about 100.5).

Fitting is expectation-maximisation (Dempster, Laird and Rubin 1977; Bishop 2006, section 9.3.3) with
additive (Dirichlet) smoothing: ``alpha`` pseudo-counts on every pixel value and ``pi_alpha`` on
every component. EM then maximises the log posterior

    J = sum_n log p(x_n) + alpha sum_{k,d,l} log theta[k,d,l] + pi_alpha sum_k log pi_k  (1.2)

and never decreases it (with both pseudo-counts 0 it is plain maximum likelihood).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from coursekit.utils import to_numpy

__all__ = ["MixtureConfig", "CategoricalMixture", "as_levels", "uniform_nll"]


@dataclass
class MixtureConfig:
    """Settings of ``CategoricalMixture``."""

    n_components: int = 10  # K, the number of mixture components
    num_levels: int = 17  # L, the values a pixel takes: 0 .. L-1 (17 for the digits)
    alpha: float = 0.5  # pseudo-count added to every (component, pixel, value) count, >= 0
    pi_alpha: float = 1.0  # pseudo-count added to every component's count, >= 0
    max_iter: int = 200  # EM iterations at most (per restart)
    tol: float = 1e-6  # stop when J (eq. 1.2) per image improves by less than this
    n_init: int = 1  # random restarts; the one with the highest J is kept
    seed: int = 0  # seeds the initial responsibilities (and nothing global)


def as_levels(x, num_levels: int) -> np.ndarray:
    """Check and flatten integer grey levels to ``(N, D)`` int64.

    Args:
        x: ``(N, ...)`` integers in ``0 .. num_levels - 1`` (a NumPy array or a torch tensor),
            e.g. ``coursekit.data.digits().levels`` of shape ``(N, 1, 8, 8)``.
        num_levels: ``L``.

    Returns:
        ``(N, D)`` int64 with ``D`` the product of the trailing dimensions.

    Raises:
        ValueError: ``x`` has fewer than 2 dimensions, is not integer, or holds a value outside
            ``0 .. L-1`` (the message names the offending value).

    Example:
        >>> as_levels(np.array([[[0, 16], [3, 4]]]), 17).tolist()
        [[0, 16, 3, 4]]
    """
    array = to_numpy(x)
    if array.ndim < 2:
        raise ValueError(f"levels must be (N, ...) with one row per image, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"levels must be integers 0..{num_levels - 1}, got dtype {array.dtype}")
    flat = array.reshape(len(array), int(np.prod(array.shape[1:]))).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= num_levels):
        bad = flat.min() if flat.min() < 0 else flat.max()
        raise ValueError(f"levels must lie in 0..{num_levels - 1}, found {int(bad)}")
    return flat


def uniform_nll(num_pixels: int, num_levels: int) -> float:
    """Negative log-likelihood in nats of any image under independent uniform pixels: ``D ln L``.

    Example:
        >>> round(uniform_nll(64, 17), 1)
        181.3
    """
    return float(num_pixels * np.log(num_levels))


@dataclass
class CategoricalMixture:
    """A mixture of ``K`` products of categoricals (eq. 1.1), fitted by EM (eq. 1.2).

    Attributes (after ``fit``):
        log_pi: ``(K,)`` log mixing weights.
        log_theta: ``(K, D, L)`` log pixel probabilities; ``exp`` sums to 1 over the last axis.
        image_shape: the shape of one training image, used by ``sample``.
        history: ``J / N`` (eq. 1.2) after each EM iteration of the kept restart.
        loglik_history: the training log-likelihood per image after each iteration.

    Example:
        >>> from coursekit.data import digits
        >>> model = CategoricalMixture(MixtureConfig(n_components=5)).fit(digits("train").levels)
        >>> nll = -model.log_prob(digits("test").levels).mean()
        >>> bool(nll < uniform_nll(64, 17))
        True
    """

    config: MixtureConfig = field(default_factory=MixtureConfig)
    log_pi: np.ndarray | None = None
    log_theta: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None
    history: list[float] = field(default_factory=list)
    loglik_history: list[float] = field(default_factory=list)

    def __post_init__(self):
        c = self.config
        if c.n_components < 1 or c.num_levels < 2:
            raise ValueError(f"need n_components >= 1 and num_levels >= 2, got "
                             f"{c.n_components} and {c.num_levels}")
        if c.alpha < 0 or c.pi_alpha < 0:
            raise ValueError(f"pseudo-counts must be >= 0, got alpha={c.alpha}, "
                             f"pi_alpha={c.pi_alpha}")
        if c.max_iter < 1 or c.n_init < 1:
            raise ValueError(f"need max_iter >= 1 and n_init >= 1, got {c.max_iter}, {c.n_init}")

    # ------------------------------------------------------------------------------------ EM

    def _onehot(self, x: np.ndarray) -> np.ndarray:
        n, d = x.shape
        onehot = np.zeros((n, d * self.config.num_levels))  # (N, D*L)
        onehot[np.arange(n)[:, None], np.arange(d) * self.config.num_levels + x] = 1.0
        return onehot

    @staticmethod
    def _safe_log(p: np.ndarray) -> np.ndarray:
        # With zero pseudo-counts a probability can be exactly 0; a huge negative log keeps
        # 0 * log 0 = 0 in the matrix products below instead of NaN.
        return np.log(np.maximum(p, 1e-300))

    def _joint(self, onehot: np.ndarray, log_pi: np.ndarray, log_theta: np.ndarray) -> np.ndarray:
        k = len(log_pi)
        return onehot @ log_theta.reshape(k, -1).T + log_pi  # (N, K): log pi_k + log p(x_n | k)

    def _m_step(self, onehot: np.ndarray, resp: np.ndarray, d: int):
        c = self.config
        n_k = resp.sum(0)  # (K,)
        counts = (resp.T @ onehot).reshape(-1, d, c.num_levels)  # (K, D, L) expected counts
        theta = (counts + c.alpha) / (n_k[:, None, None] + c.num_levels * c.alpha)
        pi = (n_k + c.pi_alpha) / (len(resp) + len(n_k) * c.pi_alpha)
        return self._safe_log(pi), self._safe_log(theta)

    def _objective(self, joint: np.ndarray, log_pi, log_theta) -> tuple[float, float]:
        loglik = float(logsumexp(joint, axis=1).sum())
        prior = self.config.alpha * float(log_theta.sum()) + self.config.pi_alpha * float(
            log_pi.sum())
        return loglik, loglik + prior

    def _init_resp(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Hard-assign each image to the nearest (L1) of K randomly chosen training images. Random
        # soft responsibilities start EM near the symmetric point where every component is the
        # data mean, where it can stall (tiny improvements trip the tolerance).
        k = self.config.n_components
        centres = x[rng.choice(len(x), size=k, replace=k > len(x))]  # (K, D)
        dist = np.abs(x[:, None, :] - centres[None, :, :]).sum(-1)  # (N, K)
        resp = np.zeros((len(x), k))
        resp[np.arange(len(x)), dist.argmin(1)] = 1.0
        return resp

    def fit(self, levels) -> "CategoricalMixture":
        """Fit by EM from a random start (see ``_init_resp``), keeping the best of ``n_init`` restarts.

        Args:
            levels: ``(N, ...)`` integer grey levels in ``0 .. L-1``, ``N >= 1``.

        Returns:
            ``self``, fitted.
        """
        c = self.config
        x = as_levels(levels, c.num_levels)  # (N, D)
        if len(x) == 0:
            raise ValueError("cannot fit a mixture to an empty training set (N = 0)")
        n, d = x.shape
        array = to_numpy(levels)
        self.image_shape = tuple(array.shape[1:])
        onehot = self._onehot(x)  # (N, D*L)
        rng = np.random.default_rng(c.seed)
        best = None
        for _ in range(c.n_init):
            resp = self._init_resp(x, rng)  # (N, K)
            log_pi, log_theta = self._m_step(onehot, resp, d)
            history, loglik_history = [], []
            for _ in range(c.max_iter):
                joint = self._joint(onehot, log_pi, log_theta)  # (N, K)
                loglik, objective = self._objective(joint, log_pi, log_theta)
                history.append(objective / n)
                loglik_history.append(loglik / n)
                if len(history) > 1 and history[-1] - history[-2] < c.tol:
                    break
                resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))  # E-step
                log_pi, log_theta = self._m_step(onehot, resp, d)
            if best is None or history[-1] > best[0][-1]:
                best = (history, loglik_history, log_pi, log_theta)
        self.history, self.loglik_history, self.log_pi, self.log_theta = best
        return self

    # ------------------------------------------------------------------------- using the model

    def _check_fitted(self) -> None:
        if self.log_theta is None:
            raise RuntimeError("the mixture is not fitted yet: call fit(levels) first")

    def log_prob(self, levels) -> np.ndarray:
        """``log p(x)`` in nats for each image (eq. 1.1), computed with a stable logsumexp.

        Args:
            levels: ``(N, ...)`` integer grey levels with ``D`` pixels per image, as in ``fit``.

        Returns:
            ``(N,)`` float64; ``-log_prob(x).mean()`` is the NLL in nats per image.
        """
        self._check_fitted()
        x = as_levels(levels, self.config.num_levels)
        d = self.log_theta.shape[1]
        if x.shape[1] != d:
            raise ValueError(f"the model has {d} pixels per image, got images of "
                             f"{x.shape[1]} pixels (shape {tuple(np.shape(levels))})")
        return logsumexp(self._joint(self._onehot(x), self.log_pi, self.log_theta), axis=1)

    def nll(self, levels) -> float:
        """Mean negative log-likelihood in nats per image."""
        return float(-self.log_prob(levels).mean())

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Draw ``n`` images by ancestral sampling: a component, then every pixel given it.

        Args:
            n: how many images, ``>= 1``.
            seed: seeds a private generator (the global NumPy state is left alone).

        Returns:
            ``(n, *image_shape)`` int64 grey levels in ``0 .. L-1``.
        """
        self._check_fitted()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        rng = np.random.default_rng(seed)
        k = rng.choice(len(self.log_pi), size=n, p=np.exp(self.log_pi) / np.exp(self.log_pi).sum())
        probs = np.exp(self.log_theta[k])  # (n, D, L)
        cdf = np.cumsum(probs, axis=-1)
        u = rng.random(probs.shape[:2])[..., None]  # (n, D, 1)
        values = (u * cdf[..., -1:] > cdf).sum(-1)  # inverse-CDF draw per pixel
        values = np.minimum(values, self.config.num_levels - 1)
        return values.reshape((n, *self.image_shape)).astype(np.int64)
