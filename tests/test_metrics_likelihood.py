"""ELBO, IWAE and bits per dimension on a model whose log-likelihood is known exactly."""

import math

import pytest
import torch

from coursekit.metrics import ELBO, IWAENLL, BitsPerDim, bits_per_dim, elbo, iwae_nll

SIGMA2 = 0.5  # x | z ~ N(z, SIGMA2), z ~ N(0, 1), so x ~ N(0, 1 + SIGMA2) exactly


def _log_normal(x, mean, var):
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


def _weights(x, K, gen):
    """log p(x, z_k) - log q(z_k | x) for a deliberately imperfect q(z|x) = N(0.5 x, 0.5)."""
    q_mean, q_var = 0.5 * x, torch.tensor(0.5, dtype=torch.float64)
    z = q_mean + q_var.sqrt() * torch.randn(K, len(x), generator=gen, dtype=torch.float64)
    log_px_z = _log_normal(x, z, torch.tensor(SIGMA2, dtype=torch.float64))  # (K, B)
    log_pz = _log_normal(z, torch.zeros(()), torch.ones((), dtype=torch.float64))
    log_qz = _log_normal(z, q_mean, q_var)
    # analytic KL(N(m, v) || N(0, 1)) = (v + m^2 - 1 - log v) / 2
    kl = 0.5 * (q_var + q_mean**2 - 1 - torch.log(q_var))  # (B,)
    return log_px_z + log_pz - log_qz, log_px_z, kl


def test_bounds_order_and_converge_to_the_true_nll():
    gen = torch.Generator().manual_seed(0)
    x = torch.linspace(-2, 2, 50, dtype=torch.float64)
    true_nll = -_log_normal(x, torch.zeros(()), torch.tensor(1 + SIGMA2, dtype=torch.float64))
    log_w, log_px_z, kl = _weights(x, 5000, gen)
    neg_elbo = -elbo(log_px_z, kl)  # (B,) Monte Carlo over 5000 samples
    nll = {K: iwae_nll(log_w[:K]).mean() for K in (1, 10, 5000)}
    assert float(neg_elbo.mean()) > float(nll[10]) > float(true_nll.mean())
    assert float(nll[1]) == pytest.approx(float(-log_w[:1].mean()), rel=1e-12)  # K=1: -ELBO
    assert float(nll[5000]) == pytest.approx(float(true_nll.mean()), abs=0.01)
    assert float(neg_elbo.mean() - true_nll.mean()) > 0.05  # the gap of an imperfect q


def test_accumulators_and_bits():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, dtype=torch.float64)
    log_w, log_px_z, kl = _weights(x, 8, gen)
    m_elbo, m_iwae, m_bits = ELBO(), IWAENLL(), BitsPerDim(num_dims=1)
    for part in (slice(0, 15), slice(15, 40)):
        m_elbo.update(log_px_z[:, part], kl[part])
        m_iwae.update(log_w[:, part])
        m_bits.update(iwae_nll(log_w[:, part]))
    assert m_elbo.compute() == pytest.approx(float(elbo(log_px_z, kl).mean()), rel=1e-12)
    assert m_iwae.compute() == pytest.approx(float(iwae_nll(log_w).mean()), rel=1e-12)
    assert m_bits.compute() == pytest.approx(m_iwae.compute() / math.log(2), rel=1e-12)
    assert ELBO.higher_is_better and not IWAENLL.higher_is_better
    # uniform over 256 levels is 8 bits; a density on x / 256 that is uniform on [0, 1) has nll 0
    assert bits_per_dim(784 * math.log(256), 784) == pytest.approx(8.0)
    assert bits_per_dim(0.0, 784, scale=256) == pytest.approx(8.0)


def test_bad_input():
    with pytest.raises(ValueError, match="shapes"):
        elbo(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="negative"):
        elbo(torch.zeros(3), -torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        iwae_nll(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="2 dimensions"):
        iwae_nll(torch.zeros(3))
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(1.0, 0)
