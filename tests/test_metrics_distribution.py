"""FID, KID, precision/recall and the Inception-style score: agreement with scipy and torchmetrics,
the FID bias anchor, and the behaviour on collapsed or identical sets."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from coursekit import data
from coursekit.features import extract_features, feature_net
from coursekit.metrics import (FID, KID, InceptionScore, PrecisionRecall, fid, gaussian_stats,
                               inception_score, kid, precision_recall)

REL = 1e-4  # relative agreement of FID with the references


class _Identity(torch.nn.Module):
    """Lets torchmetrics' metrics take features directly."""

    def forward(self, x):
        return x


def _fid_sqrtm(a: torch.Tensor, b: torch.Tensor) -> float:
    """The direct formula with scipy's general matrix square root (the slow reference route)."""
    mu1, s1 = (t.numpy() for t in gaussian_stats(a))
    mu2, s2 = (t.numpy() for t in gaussian_stats(b))
    with warnings.catch_warnings():  # singular covariances (dead ReLU features) are expected
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def _feature_sets():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 16, generator=g, dtype=torch.float64)
    b = 0.8 * torch.randn(250, 16, generator=g, dtype=torch.float64) @ torch.randn(
        16, 16, generator=g, dtype=torch.float64) + 0.3
    yield "random gaussian", a, b
    net = feature_net("digits")
    real = extract_features(net, data.digits("train").images)  # (1000, 128)
    test = data.digits("test").images
    noisy = (test + 0.3 * torch.randn(test.shape, generator=g)).clamp(0, 1)
    yield "digits vs noisy digits", real, extract_features(net, noisy)


@pytest.mark.parametrize("name,a,b", list(_feature_sets()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_fid_agrees_with_sqrtm_and_torchmetrics(name, a, b):
    from torchmetrics.image.fid import FrechetInceptionDistance

    ours = fid(a, b)
    assert ours == pytest.approx(_fid_sqrtm(a, b), rel=REL)
    tm = FrechetInceptionDistance(feature=_Identity(), normalize=False,
                                  input_img_size=(a.shape[1],))
    tm.update(a, real=True)
    tm.update(b, real=False)
    assert ours == pytest.approx(float(tm.compute()), rel=REL)
    acc = FID()
    for part in a.split(128):
        acc.update(part, real=True)
    for part in b.split(100):
        acc.update(part, real=False)
    assert acc.compute() == pytest.approx(ours, rel=1e-6)  # see FID's docstring
    assert not FID.higher_is_better


def test_fid_bias_anchor_falls_like_one_over_n():
    """Two samples of N(0, I_64): FID ~ (d(d+1)/2 + 2d) / N = 2208 / N to second order.

    COURSE.md's anchor (17.4, 1.75, 0.17 at N = 100, 1000, 10000) does not name its covariance;
    the bias scales with it, and for the identity we measure about 1.28 times the anchor.
    """
    g = torch.Generator().manual_seed(0)
    values = {}
    for n in (200, 1000):
        runs = [fid(torch.randn(n, 64, generator=g), torch.randn(n, 64, generator=g))
                for _ in range(3)]
        values[n] = float(np.mean(runs))
    assert values[1000] == pytest.approx(2208 / 1000, rel=0.1)
    assert 4.0 < values[200] / values[1000] < 6.0  # bias ~ 1/N


def test_fid_warns_with_fewer_samples_than_dimensions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 64, generator=g), torch.randn(50, 64, generator=g)
    with pytest.warns(UserWarning, match=r"fewer samples than feature dimensions.*score FID \d"):
        fid(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid(torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g))


def _kid_sets():
    g = torch.Generator().manual_seed(0)
    yield ("random gaussian", torch.randn(300, 32, generator=g, dtype=torch.float64),
           torch.randn(280, 32, generator=g, dtype=torch.float64) * 1.1 + 0.1)
    _, real, noisy = list(_feature_sets())[1]
    yield "digits vs noisy digits", real, noisy


@pytest.mark.parametrize("name,a,b", list(_kid_sets()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_kid_agrees_with_torchmetrics(name, a, b):
    from torchmetrics.image.kid import KernelInceptionDistance

    torch.manual_seed(7)
    mean, std = kid(a, b, subsets=20, subset_size=100)
    with warnings.catch_warnings():  # torchmetrics' note that it keeps every feature
        warnings.simplefilter("ignore")
        tm = KernelInceptionDistance(feature=_Identity(), subsets=20, subset_size=100)
        tm.update(a, real=True)
        tm.update(b, real=False)
        torch.manual_seed(7)  # torchmetrics draws its subsets from the global generator, as we do
        tm_mean, tm_std = (float(t) for t in tm.compute())
    assert mean == pytest.approx(tm_mean, rel=1e-6)
    assert std == pytest.approx(tm_std, rel=1e-6)
    acc = KID(subsets=20, subset_size=100)
    acc.update(a, real=True)
    acc.update(b, real=False)
    torch.manual_seed(7)
    assert acc.compute()[0] == pytest.approx(mean, rel=1e-12)


def test_kid_is_unbiased_where_fid_is_not():
    g = torch.Generator().manual_seed(1)
    small = [kid(torch.randn(100, 16, generator=g), torch.randn(100, 16, generator=g),
                 subsets=1)[0] for _ in range(30)]
    assert abs(np.mean(small)) < 3 * np.std(small) / np.sqrt(len(small))


def test_precision_recall_separates_fidelity_from_coverage():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(600, 4, generator=g)
    same = torch.randn(600, 4, generator=g)
    collapsed = 0.2 * torch.randn(600, 4, generator=g)  # realistic but one narrow mode
    far = torch.randn(600, 4, generator=g) + 10  # covers nothing real
    p, r = precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    p, r = precision_recall(real, collapsed)
    assert p > 0.95 and r < 0.3
    assert precision_recall(real, far) == (0.0, 0.0)
    acc = PrecisionRecall(k=3)
    acc.update(real[:300], real=True)
    acc.update(real[300:], real=True)
    acc.update(collapsed, real=False)
    assert acc.compute() == precision_recall(real, collapsed, chunk=100)


def test_inception_score_bounds_and_accumulation():
    K = 10
    assert inception_score(torch.full((50, K), 1 / K))[0] == pytest.approx(1.0)
    assert inception_score(torch.eye(K).repeat(5, 1))[0] == pytest.approx(K)
    assert inception_score(torch.eye(K)[[3] * 40])[0] == pytest.approx(1.0)  # one class only
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(200, K, generator=g).mul(3).softmax(1)
    acc = InceptionScore()
    for part in probs.split(64):
        acc.update(part)
    assert acc.compute() == pytest.approx(inception_score(probs)[0], rel=1e-10)
    mean, std = inception_score(probs, splits=4)
    assert 1 < mean < K and std > 0


def test_bad_input():
    a = torch.randn(20, 8)
    with pytest.raises(ValueError, match="same feature dimension"):
        fid(a, torch.randn(20, 9))
    with pytest.raises(ValueError, match="NaN"):
        fid(a, torch.full((20, 8), float("nan")))
    with pytest.raises(ValueError, match="infinite"):
        kid(a, torch.full((20, 8), float("inf")))
    with pytest.raises(ValueError, match="2 dimensions"):
        precision_recall(a, torch.randn(20, 8, 1))
    with pytest.raises(ValueError, match="subset_size"):
        kid(a, a, subset_size=50)
    with pytest.raises(TypeError, match="floating"):
        fid(a, torch.ones(20, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="probabilities"):
        inception_score(torch.randn(10, 3))
