"""coursekit.mixture: EM's monotone objective, agreement with closed forms and a brute-force
likelihood, normalised probabilities, sampling, determinism and clear errors (Chapter 1)."""

import itertools

import numpy as np
import pytest
import torch

from coursekit.data import digits
from coursekit.mixture import CategoricalMixture, MixtureConfig, as_levels, uniform_nll


@pytest.fixture(scope="module")
def train():
    return digits("train").levels.numpy()  # (1000, 1, 8, 8)


@pytest.fixture(scope="module")
def test_levels():
    return digits("test").levels.numpy()  # (447, 1, 8, 8)


def fit(levels, **kwargs):
    return CategoricalMixture(MixtureConfig(**kwargs)).fit(levels)


@pytest.mark.parametrize("k,alpha,pi_alpha", [(3, 0.5, 1.0), (10, 0.1, 1.0), (20, 1.0, 0.0)])
def test_em_never_decreases_its_objective(train, k, alpha, pi_alpha):
    model = fit(train[:300], n_components=k, alpha=alpha, pi_alpha=pi_alpha, seed=1)
    history = np.array(model.history)
    assert len(history) > 2
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[:-1]))


def test_em_without_prior_never_decreases_the_log_likelihood(train):
    # With zero pseudo-counts EM is maximum likelihood, and the log-likelihood itself is monotone.
    model = fit(train, n_components=8, alpha=0.0, pi_alpha=0.0, seed=0, tol=0.0, max_iter=60)
    loglik = np.array(model.loglik_history)
    assert np.all(np.diff(loglik) >= -1e-9 * np.abs(loglik[:-1]))
    assert loglik[-1] > loglik[0] + 1.0  # and it does improve
    np.testing.assert_allclose(model.history, model.loglik_history)


def test_one_component_equals_closed_form_smoothed_frequencies(train, test_levels):
    alpha = 0.5
    model = fit(train, n_components=1, alpha=alpha)
    x = train.reshape(len(train), 64)
    counts = np.stack([np.bincount(x[:, d], minlength=17) for d in range(64)])  # (64, 17)
    theta = (counts + alpha) / (len(x) + 17 * alpha)
    xt = test_levels.reshape(len(test_levels), 64)
    expected = np.log(theta[np.arange(64), xt]).sum(1)  # (447,)
    np.testing.assert_allclose(model.log_prob(test_levels), expected, rtol=1e-12, atol=1e-9)


def test_log_prob_matches_brute_force_mixture(train):
    model = fit(train[:200], n_components=3, seed=2)
    pi, theta = np.exp(model.log_pi), np.exp(model.log_theta)  # (3,), (3, 64, 17)
    x = train[200:210].reshape(10, 64)
    brute = [np.log(sum(pi[k] * np.prod(theta[k, np.arange(64), xi]) for k in range(3)))
             for xi in x]
    np.testing.assert_allclose(model.log_prob(train[200:210]), brute, rtol=1e-10)


def test_probabilities_are_normalised(train):
    model = fit(train[:200], n_components=5, alpha=0.3)
    np.testing.assert_allclose(np.exp(model.log_theta).sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(model.log_pi).sum(), 1.0, rtol=1e-12)
    assert model.log_theta.shape == (5, 64, 17)
    # Over a tiny image space the model's probabilities of all images sum to one.
    tiny = np.array(list(itertools.product(range(3), repeat=4)))  # all 81 images of 4 pixels
    small = fit(tiny[::2], n_components=2, num_levels=3, alpha=0.5)
    assert np.isclose(np.exp(small.log_prob(tiny)).sum(), 1.0)


def test_beats_uniform_and_more_data_helps(train, test_levels):
    assert np.isclose(uniform_nll(64, 17), 64 * np.log(17))
    few = fit(train[:100], n_components=1).nll(test_levels)
    many = fit(train, n_components=1).nll(test_levels)
    assert many < few < uniform_nll(64, 17) - 50


def test_sample_shapes_ranges_and_frequencies(train):
    model = fit(train, n_components=1, alpha=0.5)
    samples = model.sample(4000, seed=0)
    assert samples.shape == (4000, 1, 8, 8) and samples.dtype == np.int64
    assert samples.min() >= 0 and samples.max() <= 16
    # With one component each pixel is an independent categorical: compare frequencies.
    flat = samples.reshape(4000, 64)
    freq = np.stack([np.bincount(flat[:, d], minlength=17) for d in range(64)]) / 4000
    theta = np.exp(model.log_theta[0])  # (64, 17)
    assert np.abs(freq - theta).max() < 5 * np.sqrt(0.25 / 4000)


def test_sampling_picks_components_by_weight():
    # Two clearly different components: all-0 images and all-2 images, 3:1.
    data = np.array([[0, 0, 0]] * 300 + [[2, 2, 2]] * 100)
    model = fit(data, n_components=2, num_levels=3, alpha=0.01, seed=0)
    samples = model.sample(4000, seed=1)
    share = (samples.sum(1) == 0).mean()
    assert abs(share - 0.75) < 0.03


def test_deterministic_given_seed(train):
    a = fit(train[:300], n_components=5, seed=3)
    b = fit(train[:300], n_components=5, seed=3)
    c = fit(train[:300], n_components=5, seed=4)
    np.testing.assert_array_equal(a.log_theta, b.log_theta)
    np.testing.assert_array_equal(a.sample(10, seed=0), b.sample(10, seed=0))
    assert not np.array_equal(a.log_theta, c.log_theta)


def test_restarts_keep_the_best_objective(train):
    # The first of the three restarts draws the same start as the single run with this seed.
    single = fit(train[:300], n_components=5, seed=0)
    multi = fit(train[:300], n_components=5, seed=0, n_init=3)
    assert multi.history[-1] >= single.history[-1] - 1e-12


def test_accepts_torch_and_flat_inputs(train):
    a = fit(torch.from_numpy(train[:200]), n_components=2)
    b = fit(train[:200].reshape(200, 64), n_components=2)
    np.testing.assert_allclose(a.log_theta, b.log_theta)
    assert a.sample(2).shape == (2, 1, 8, 8) and b.sample(2).shape == (2, 64)


def test_errors_name_the_problem(train):
    with pytest.raises(ValueError, match="found 17"):
        as_levels(np.full((2, 64), 17), 17)
    with pytest.raises(ValueError, match="found -1"):
        as_levels(np.full((2, 64), -1), 17)
    with pytest.raises(ValueError, match="dtype float"):
        as_levels(np.zeros((2, 64)), 17)
    with pytest.raises(ValueError, match=r"shape \(64,\)"):
        as_levels(np.zeros(64, dtype=int), 17)
    with pytest.raises(ValueError, match="N = 0"):
        fit(np.zeros((0, 64), dtype=int))
    with pytest.raises(ValueError, match="n_components"):
        CategoricalMixture(MixtureConfig(n_components=0))
    with pytest.raises(ValueError, match="alpha=-1"):
        CategoricalMixture(MixtureConfig(alpha=-1))
    with pytest.raises(RuntimeError, match="not fitted"):
        CategoricalMixture().log_prob(train[:2])
    model = fit(train[:50], n_components=2)
    with pytest.raises(ValueError, match="64 pixels per image, got images of 63"):
        model.log_prob(np.zeros((2, 63), dtype=int))
    with pytest.raises(ValueError, match="n must be >= 1"):
        model.sample(0)


