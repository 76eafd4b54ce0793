"""coursekit.risks.privacy: the RDP accountant against Opacus's, per-example gradients against
one-at-a-time backprop, DP-SGD's clipping and noise, the AUROC bound of (eps, 0)-DP; and the
attack's TPR at a fixed FPR."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from coursekit.risks.membership import tpr_at_fpr
from coursekit.risks.privacy import (DPConfig, auroc_bound, dp_epsilon, dp_sgd, noise_for_epsilon,
                                     per_example_grads, rdp_sampled_gaussian)

# RDP of one sampled-Gaussian step, computed with Opacus 1.6.0
# (opacus.accountants.analysis.rdp.compute_rdp(q, noise_multiplier, steps=1, orders=[a]))
OPACUS_RDP = [((0.01, 1.1, 8), 0.0005840703355202467), ((0.1, 2.34, 16), 0.02284381849227459),
              ((0.05, 0.8, 3), 0.019761366108984067), ((0.2, 5.0, 40), 0.04472367155173782)]


@pytest.mark.parametrize("args, expected", OPACUS_RDP)
def test_rdp_agrees_with_opacus(args, expected):
    assert math.isclose(rdp_sampled_gaussian(*args), expected, rel_tol=1e-9)


def test_rdp_reduces_to_the_gaussian_mechanism_and_grows_with_q():
    for sigma, a in ((0.7, 2), (3.0, 30)):
        assert math.isclose(rdp_sampled_gaussian(1.0, sigma, a), a / (2 * sigma ** 2))
        # q -> 1 through the general formula (q = 1 - 1e-12) gives the same
        assert math.isclose(rdp_sampled_gaussian(1 - 1e-12, sigma, a), a / (2 * sigma ** 2),
                            rel_tol=1e-6)
    qs = [0.001, 0.01, 0.1, 0.5]
    values = [rdp_sampled_gaussian(q, 1.5, 10) for q in qs]
    assert values == sorted(values)
    with pytest.raises(ValueError, match="order must be an integer >= 2"):
        rdp_sampled_gaussian(0.1, 1.0, 1)


def test_epsilon_composes_and_noise_for_epsilon_inverts_it():
    e1, _ = dp_epsilon(0.1, 2.0, 100, 1e-5)
    e2, _ = dp_epsilon(0.1, 2.0, 1000, 1e-5)
    assert 0 < e1 < e2
    sigma = noise_for_epsilon(8.0, 0.1, 1000, 1e-5)
    assert dp_epsilon(0.1, sigma, 1000, 1e-5)[0] <= 8.0 < dp_epsilon(0.1, sigma - 0.01, 1000,
                                                                      1e-5)[0]
    assert dp_epsilon(0.1, 0.0, 10, 1e-5)[0] == math.inf


def test_auroc_bound_is_the_area_under_the_dp_tradeoff_curve():
    f = np.linspace(0, 1, 200_001)
    for eps in (0.1, 1.0, 3.0):
        tpr = np.minimum(math.exp(eps) * f, 1 - math.exp(-eps) * (1 - f))
        area = float(np.sum((tpr[1:] + tpr[:-1]) / 2 * np.diff(f)))
        assert math.isclose(area, auroc_bound(eps), abs_tol=1e-6)


def test_per_example_gradients_match_one_example_backprop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    batch = {"x": torch.randn(6, 5), "y": torch.randn(6, 1)}

    def objective(m, b):
        return (m(b["x"]) - b["y"]).pow(2).sum(1)

    g = per_example_grads(model, objective, batch)
    for i in range(6):
        model.zero_grad()
        objective(model, {k: v[i:i + 1] for k, v in batch.items()}).sum().backward()
        for name, p in model.named_parameters():
            assert torch.allclose(g[name][i], p.grad, atol=1e-6)


def test_dp_sgd_clips_adds_noise_and_reports_epsilon():
    torch.manual_seed(0)
    data = {"x": torch.randn(200, 3), "y": torch.randn(200, 1)}

    def objective(m, b):
        return (m(b["x"]) - b["y"]).pow(2).sum(1)

    # no noise and a huge clip: the update is plain full-batch SGD's direction
    a = nn.Linear(3, 1)
    b = nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    out = dp_sgd(a, objective, data, DPConfig(clip=1e6, noise_multiplier=0.0, sample_rate=1.0,
                                              steps=1, lr=0.1))
    assert out["epsilon"] == math.inf and out["clipped"] == 0.0
    opt = torch.optim.Adam(b.parameters(), lr=0.1)
    (objective(b, data).sum() / 200).backward()
    opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)
    # a tiny clip shortens every gradient, and the same seed gives the same model
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        m = nn.Linear(3, 1)
        out = dp_sgd(m, objective, data, DPConfig(clip=1e-3, noise_multiplier=1.0,
                                                  sample_rate=0.1, steps=5))
        runs.append(m.weight.detach().clone())
    assert out["clipped"] == 1.0 and math.isfinite(out["epsilon"]) and out["epsilon"] > 0
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="sample_rate must lie in"):
        DPConfig(sample_rate=0.0)


def test_tpr_at_fpr_reads_the_low_fpr_end_of_the_roc_curve():
    rng = np.random.default_rng(0)
    members, others = rng.normal(-0.5, 1, 4000), rng.normal(0, 1, 4000)
    # for Gaussians the ROC is known: TPR = Phi(Phi^-1(FPR) + 0.5)
    from scipy.stats import norm

    for fpr in (0.01, 0.05, 0.2):
        assert abs(tpr_at_fpr(members, others, fpr) - norm.cdf(norm.ppf(fpr) + 0.5)) < 0.02
    assert tpr_at_fpr(others[:2000], others[2000:], 0.05) < 0.08   # no signal: TPR ~ FPR
    with pytest.raises(ValueError, match="fpr must lie in"):
        tpr_at_fpr(members, others, 1.0)
