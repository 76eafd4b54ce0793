"""coursekit.losses against torch's references: BCEWithLogits, torch.distributions, autograd."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from coursekit.losses import (GAN_LOSSES, discriminator_loss, gaussian_kl, generator_loss,
                              gradient_penalty, log_bernoulli, log_categorical, log_normal,
                              reparameterize)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, generator=g) * 3, torch.randn(32, generator=g) * 3


def test_discriminator_loss_matches_bce(logits):
    real, fake = logits
    bce = torch.nn.BCEWithLogitsLoss()
    expected = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
    for kind in ("minimax", "nonsaturating"):
        assert torch.allclose(discriminator_loss(real, fake, kind), expected, atol=1e-6)


def test_generator_losses_match_their_definitions(logits):
    _, fake = logits
    d = torch.sigmoid(fake.double())
    assert torch.allclose(generator_loss(fake, "minimax").double(), torch.log1p(-d).mean(),
                          atol=1e-5)
    nonsat = torch.nn.BCEWithLogitsLoss()(fake, torch.ones_like(fake))
    assert torch.allclose(generator_loss(fake, "nonsaturating"), nonsat, atol=1e-6)
    assert torch.allclose(generator_loss(fake, "wgan"), -fake.mean())
    assert torch.allclose(generator_loss(fake, "hinge"), -fake.mean())


def test_wgan_and_hinge_critic_losses(logits):
    real, fake = logits
    assert torch.allclose(discriminator_loss(real, fake, "wgan"), fake.mean() - real.mean())
    hinge = torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean()
    assert torch.allclose(discriminator_loss(real, fake, "hinge"), hinge)


def test_minimax_saturates_where_nonsaturating_does_not():
    t = torch.tensor([-8.0], requires_grad=True)  # D(G(z)) = sigmoid(-8): confidently rejected
    (g_mm,) = torch.autograd.grad(generator_loss(t, "minimax"), t)
    (g_ns,) = torch.autograd.grad(generator_loss(t, "nonsaturating"), t)
    assert abs(g_mm.item()) < 1e-3 < 0.99 < abs(g_ns.item())


def test_losses_are_finite_for_extreme_logits():
    t = torch.tensor([-200.0, 200.0])
    for kind in GAN_LOSSES:
        assert torch.isfinite(discriminator_loss(t, t, kind))
        assert torch.isfinite(generator_loss(t, kind))


def test_unknown_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'lsgan'.*minimax.*nonsaturating.*wgan.*hinge"):
        generator_loss(torch.zeros(2), "lsgan")
    with pytest.raises(ValueError, match="valid kinds"):
        discriminator_loss(torch.zeros(2), torch.zeros(2), "bce")


def test_gradient_penalty_of_a_linear_critic_is_exact():
    w = torch.tensor([[0.6], [0.8]])  # ||w|| = 1: no penalty
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    assert gradient_penalty(lambda x: x @ w, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(lambda x: x @ (3 * w), real, fake).item() == pytest.approx(4.0)


def test_gradient_penalty_is_differentiable_in_the_critic_parameters():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 1))
    gp = gradient_penalty(critic, torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2))
    gp.backward()
    # every weight shapes the input gradient (the last bias does not, so it gets no gradient)
    weights = [critic[1].weight, critic[1].bias, critic[3].weight]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
    with pytest.raises(ValueError, match=r"\(4, 12\) and \(3, 12\)"):
        gradient_penalty(critic, torch.randn(4, 12), torch.randn(3, 12))


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 3, 4), torch.randn(5, 3, 4)
    q = D.Normal(mu, torch.exp(0.5 * logvar))
    p = D.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = D.kl_divergence(q, p).sum(dim=(1, 2))
    assert gaussian_kl(mu, logvar).shape == (5,)
    assert torch.allclose(gaussian_kl(mu, logvar), expected, atol=1e-5)


def test_log_normal_matches_torch_distributions_and_broadcasts():
    x, mu, logvar = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    expected = D.Normal(mu, torch.exp(0.5 * logvar)).log_prob(x).sum(dim=(1, 2, 3))
    assert torch.allclose(log_normal(x, mu, logvar), expected, atol=1e-4)
    shared = log_normal(x, mu, torch.tensor(0.0))
    assert torch.allclose(shared, D.Normal(mu, 1.0).log_prob(x).sum(dim=(1, 2, 3)), atol=1e-4)
    with pytest.raises(ValueError, match="broadcast"):
        log_normal(x, torch.zeros(6, 2, 8, 8), logvar)


def test_log_bernoulli_matches_torch_distributions():
    x = (torch.rand(7, 1, 5, 5) > 0.5).float()
    logits = torch.randn(7, 1, 5, 5) * 4
    expected = D.Bernoulli(logits=logits).log_prob(x).sum(dim=(1, 2, 3))
    assert torch.allclose(log_bernoulli(x, logits), expected, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(7, 1, 5, 5\) and \(7, 25\)"):
        log_bernoulli(x, logits.reshape(7, 25))


def test_log_categorical_matches_torch_distributions():
    levels = torch.randint(0, 17, (9, 1, 8, 8))
    logits = torch.randn(9, 17, 1, 8, 8) * 2
    expected = D.Categorical(logits=logits.movedim(1, -1)).log_prob(levels).sum(dim=(1, 2, 3))
    assert torch.allclose(log_categorical(levels, logits), expected, atol=1e-4)
    uniform = log_categorical(levels, torch.zeros(9, 17, 1, 8, 8))
    assert torch.allclose(uniform, torch.full((9,), -64 * math.log(17)))


def test_log_categorical_refuses_bad_levels_and_shapes():
    logits = torch.zeros(2, 17, 1, 8, 8)
    with pytest.raises(ValueError, match="0..16, got values from 0 to 17"):
        log_categorical(torch.full((2, 1, 8, 8), 17).index_fill_(0, torch.tensor([0]), 0), logits)
    with pytest.raises(ValueError, match="integers"):
        log_categorical(torch.zeros(2, 1, 8, 8), logits)
    with pytest.raises(ValueError, match=r"\(2, 17, 1, 8, 8\).*\(2, 8, 8\)"):
        log_categorical(torch.zeros(2, 8, 8, dtype=torch.long), logits)


def test_reparameterize_moments_and_gradient():
    torch.manual_seed(0)
    mu = torch.full((20000, 2), 1.5, requires_grad=True)
    logvar = torch.full((20000, 2), math.log(0.25), requires_grad=True)
    z = reparameterize(mu, logvar)
    assert abs(z.mean().item() - 1.5) < 0.02 and abs(z.std().item() - 0.5) < 0.02
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))


def test_negative_elbo_of_uniform_decoder_is_uniform_baseline():
    """-ELBO with a posterior equal to the prior and a uniform decoder is 64 log 17 = 181.3 nats."""
    levels = torch.randint(0, 17, (3, 1, 8, 8))
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    neg_elbo = -log_categorical(levels, torch.zeros(3, 17, 1, 8, 8)) + gaussian_kl(mu, logvar)
    assert torch.allclose(neg_elbo, torch.full((3,), 181.3), atol=0.05)
    assert F.softplus(torch.tensor(0.0)).item() == pytest.approx(math.log(2))
