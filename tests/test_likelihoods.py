"""The pixel likelihoods (coursekit.models.likelihoods): each agrees with the closed form in
coursekit.losses, the discrete ones sum to one over the grey levels, and draws and means are
images in [0, 1] of the right shape; a VAE trains with each."""

import math

import pytest
import torch

from coursekit.losses import log_bernoulli, log_categorical, log_normal
from coursekit.models import VAE, VAEConfig
from coursekit.models.likelihoods import LIKELIHOODS, likelihood

SHAPE = (1, 4, 4)


def _out(lik, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = lik.outputs_per_pixel
    return torch.randn((b, k, *SHAPE) if k > 1 else (b, *SHAPE), generator=g)


def test_agree_with_the_losses():
    g = torch.Generator().manual_seed(1)
    levels = torch.randint(0, 5, (3, *SHAPE), generator=g)
    x = levels / 4
    cat = likelihood("categorical", num_levels=5)
    out = _out(cat)
    assert torch.allclose(cat.log_prob(x, out), log_categorical(levels, out))
    ber, out = likelihood("bernoulli"), _out(likelihood("bernoulli"))
    assert torch.allclose(ber.log_prob(x, out), log_bernoulli(x, out))
    gau, logvar = likelihood("gaussian"), torch.full(SHAPE, -1.0)
    out = _out(gau)
    assert torch.allclose(gau.log_prob(x, out, logvar=logvar),
                          log_normal(x, out, logvar.expand_as(out)))


@pytest.mark.parametrize("name", ["categorical", "logistic"])
def test_discrete_likelihoods_sum_to_one_over_the_levels(name):
    lik = likelihood(name, num_levels=5)
    out = _out(lik, b=1).expand(5, *_out(lik, b=1).shape[1:])            # one pixel law, 5 x
    x = torch.arange(5.0).view(5, 1, 1, 1).expand(5, *SHAPE) / 4          # every level once
    per_pixel = lik.log_prob(x, out, reduce=False).exp()                   # (5, *SHAPE)
    assert torch.allclose(per_pixel.sum(0), torch.ones(SHAPE), atol=1e-5)


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_draws_and_means_are_images(name):
    lik = likelihood(name, num_levels=5)
    out = _out(lik)
    logvar = torch.zeros(SHAPE) if lik.learned_variance else None
    g = torch.Generator().manual_seed(0)
    draw = lik.sample(out, logvar=logvar, generator=g)
    again = lik.sample(out, logvar=logvar, generator=torch.Generator().manual_seed(0))
    mean = lik.mean(out)
    for t in (draw, mean):
        assert t.shape == (3, *SHAPE) and t.min() >= 0 and t.max() <= 1
    assert torch.equal(draw, again)
    if lik.discrete:  # draws are grey levels
        assert torch.allclose(draw * 4, (draw * 4).round())


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_a_vae_trains_with_each(name):
    torch.manual_seed(0)
    vae = VAE(VAEConfig(data_shape=SHAPE, latent_dim=2, hidden=16, likelihood=name,
                        num_levels=5))
    x = torch.randint(0, 5, (6, *SHAPE)) / 4
    vae.check_data({"x": x})
    loss, logs = vae.loss("vae", {"x": x}, 0)
    loss.backward()
    assert torch.isfinite(loss) and math.isfinite(float(logs["kl"]))
    assert vae.sample(2).shape == (2, *SHAPE)


def test_unknown_likelihood_and_bad_data_are_named():
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        likelihood("poisson")
    with pytest.raises(ValueError, match=r"levels must lie in 0..4"):
        likelihood("categorical", 5).check({"x": torch.full((1, 2), 2.0)})
    with pytest.raises(ValueError, match=r"x in \[0, 1\]"):
        likelihood("bernoulli").check({"x": torch.full((1, 2), -0.5)})
