"""Likelihood metrics for models that have one: ELBO, IWAE bound, bits per dimension (Chapter 5).

A VAE cannot evaluate ``log p(x)`` exactly; it offers bounds, all in nats per example:

* ``elbo``: ``E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x)`` (Kingma and Welling 2014);
* ``iwae_nll``: ``-log (1/K) sum_k p(x, z_k) / q(z_k|x)``, an upper bound on ``-log p(x)`` that
  tightens as ``K`` grows (Burda et al. 2016); ``K = 1`` is the single-sample negative ELBO;
* ``bits_per_dim``: a negative log-likelihood in nats divided by ``D ln 2``, so that models of
  images of different sizes compare.

Lower negative log-likelihood is better; report which bound and how many samples ``K``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from coursekit.metrics._base import MeanMetric, check_positive, check_tensor

__all__ = ["elbo", "iwae_nll", "bits_per_dim", "bits_per_char", "ELBO", "IWAENLL",
           "BitsPerDim"]


def elbo(log_px_given_z: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """The evidence lower bound per example, ``E_q[log p(x|z)] - KL(q(z|x) || p(z))``.

    Args:
        log_px_given_z: ``(B,)`` reconstruction log-likelihoods ``log p(x|z)`` at one sample
            ``z ~ q(z|x)`` each, or ``(S, B)`` at ``S`` samples (averaged over ``S``).
        kl: ``(B,)`` the KL divergence of each example's posterior from the prior (analytic for
            Gaussians), in nats.

    Returns:
        ``(B,)`` ELBO in nats (higher is better; ``-elbo`` is the loss a VAE minimises).

    Example:
        >>> elbo(torch.tensor([[-90.0, -50.0], [-94.0, -52.0]]), torch.tensor([10.0, 5.0]))
        tensor([-102.,  -56.])
    """
    check_tensor("log_px_given_z", log_px_given_z)
    check_tensor("kl", kl, ndim=1)
    recon = log_px_given_z.mean(0) if log_px_given_z.ndim == 2 else log_px_given_z
    if recon.shape != kl.shape:
        raise ValueError(f"log_px_given_z must be (B,) or (S, B) and kl (B,), got shapes "
                         f"{tuple(log_px_given_z.shape)} and {tuple(kl.shape)}")
    if bool((kl < -1e-6).any()):
        raise ValueError(f"a KL divergence is negative (min {float(kl.min()):.4g}); check the "
                         f"sign of kl")
    return recon - kl


def iwae_nll(log_weights: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound on ``-log p(x)`` per example (Burda et al. 2016).

    ``-log (1/K) sum_k w_k`` with ``log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)`` and
    ``z_k ~ q(z|x)``; computed with ``logsumexp`` so that weights of ``exp(-100)`` do not underflow.

    Args:
        log_weights: ``(K, B)`` log importance weights, ``K`` samples for each of ``B`` examples.

    Returns:
        ``(B,)`` negative log-likelihood bounds in nats; decreasing (in expectation) in ``K``.

    Example:
        >>> lw = torch.tensor([[-100.0], [-101.0]])  # K = 2 samples, one example
        >>> round(float(iwae_nll(lw)), 4), round(float(-lw.mean()), 4)  # IWAE <= -ELBO
        (100.3799, 100.5)
    """
    check_tensor("log_weights", log_weights, ndim=2)
    K = log_weights.shape[0]
    return -(torch.logsumexp(log_weights.double(), dim=0) - math.log(K))


def bits_per_dim(nll: torch.Tensor | float, num_dims: int, scale: float = 1.0):
    """Convert a negative log-likelihood in nats per example into bits per dimension.

    ``nll / (D ln 2) + log2(scale)``. ``scale`` corrects for data that were divided by ``scale``
    before a *density* was fitted (for 8-bit images in ``[0, 1]``, ``scale = 256`` gives the usual
    bits per dimension of the 0..255 values); for a discrete model (categorical pixels) it is 1.

    Args:
        nll: nats per example, a float or a tensor of them.
        num_dims: ``D``, the dimensions per example (``C * H * W`` for images).
        scale: the factor the data were divided by (see above).

    Example:
        >>> bits_per_dim(64 * math.log(2), num_dims=64)  # 1 bit per pixel
        1.0
        >>> round(bits_per_dim(64 * math.log(17), 64), 4)  # uniform over 17 grey levels
        4.0875
    """
    if torch.is_tensor(nll):
        check_tensor("nll", nll)
    elif not math.isfinite(float(nll)):
        raise ValueError(f"nll must be finite, got {nll}")
    if int(num_dims) != num_dims or num_dims < 1:
        raise ValueError(f"num_dims must be a positive integer, got {num_dims}")
    scale = check_positive("scale", scale)
    return nll / (num_dims * math.log(2)) + math.log2(scale)


def bits_per_char(token_logprobs) -> float:
    """Bits per character from natural-log probabilities of the scored tokens (Chapter 5's
    bits per dimension for text; Chapter 7): ``-mean(log p) / ln 2``.

    Example:
        >>> bits_per_char([math.log(0.5), math.log(0.25)])
        1.5
    """
    lp = np.asarray(token_logprobs, dtype=np.float64)
    if lp.ndim != 1 or lp.size == 0:
        raise ValueError(f"need a non-empty 1-D array of log-probabilities, got shape {lp.shape}")
    if not np.all(lp <= 1e-9):
        raise ValueError(f"log-probabilities must be <= 0; the largest is {lp.max():.3g}")
    return float(-lp.mean() / math.log(2))


class ELBO(MeanMetric):
    """Mean ELBO per example over batches (nats)."""

    higher_is_better = True

    def _values(self, log_px_given_z, kl):
        return elbo(log_px_given_z, kl)


class IWAENLL(MeanMetric):
    """Mean IWAE negative log-likelihood bound per example over batches (nats)."""

    higher_is_better = False

    def _values(self, log_weights):
        return iwae_nll(log_weights)


class BitsPerDim(MeanMetric):
    """Mean bits per dimension over batches of per-example NLLs (nats)."""

    higher_is_better = False

    def __init__(self, num_dims: int, scale: float = 1.0):
        self.num_dims, self.scale = num_dims, scale  # see bits_per_dim()
        super().__init__()

    def _values(self, nll):
        return bits_per_dim(torch.as_tensor(nll, dtype=torch.float64), self.num_dims, self.scale)
