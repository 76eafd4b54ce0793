"""Chapter 10's tools: the watermark's z-statistic, membership inference, near-copy rates."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from coursekit.risks.membership import best_threshold_accuracy, copy_fraction, loss_threshold_auroc
from coursekit.risks.watermark import (WatermarkConfig, WatermarkedLM, detect, green_count,
                                       green_lists, z_score)
from coursekit.text.ngram import KneserNeyLM
from coursekit.text.sampling import sample


def test_green_lists_are_keyed_and_sized():
    config = WatermarkConfig(gamma=0.25)
    g = green_lists(40, config)
    assert g.shape == (40, 40) and (g.sum(axis=1) == 10).all()
    assert np.array_equal(g, green_lists(40, config))
    assert not np.array_equal(g, green_lists(40, WatermarkConfig(gamma=0.25, key=1)))


def test_z_is_standard_normal_on_random_text():
    config = WatermarkConfig()
    g = green_lists(60, config)
    rng = np.random.default_rng(0)
    z = np.array([z_score(rng.integers(0, 60, 201), g, config.gamma) for _ in range(4000)])
    # mean 0 and variance 1: the standard errors are 0.016 and about 0.022
    assert abs(z.mean()) < 0.08 and abs(z.var() - 1.0) < 0.1
    # and the one-sided tail beyond 2 holds about 2.3 % (a wrong variance would move it a lot)
    assert 0.012 < (z >= 2).mean() < 0.035


def test_detection_threshold_is_honoured():
    config = WatermarkConfig(gamma=0.5, z_threshold=4.0)
    g = green_lists(4, config)
    ids = [0]
    for _ in range(16):
        ids.append(int(np.flatnonzero(g[ids[-1]])[0]))     # all green: z = sqrt(16) = 4
    assert z_score(ids, g, 0.5) == pytest.approx(4.0)
    assert detect(ids, g, config)
    assert not detect(ids[:16], g, config)                  # z = sqrt(15) < 4
    assert green_count(ids, g) == (16, 16)


def test_watermarked_generation_is_detected_and_costs_bits():
    rng = np.random.default_rng(1)
    text = rng.integers(0, 30, 3000).tolist()
    lm = KneserNeyLM(order=2).fit(text, vocab_size=30)
    config = WatermarkConfig()
    wm = WatermarkedLM(lm, config)
    marked = sample(wm, [0], 200, seed=0)
    plain = sample(lm, [0], 200, seed=0)
    assert z_score([0] + marked, wm.green, config.gamma) >= config.z_threshold
    assert z_score([0] + plain, wm.green, config.gamma) < config.z_threshold
    held_out = rng.integers(0, 30, 400).tolist()
    assert wm.bits_per_char(held_out) > lm.bits_per_char(held_out)
    assert np.allclose(np.exp(wm.logprobs([3, 4])).sum(), 1.0)


@pytest.mark.parametrize("bad, words", [([0], "at least 2"), ([0, 99], "must lie in"),
                                        ([[0, 1]], "1-D")])
def test_bad_text_is_refused(bad, words):
    g = green_lists(10, WatermarkConfig())
    with pytest.raises(ValueError, match=words):
        z_score(bad, g, 0.25)


@pytest.mark.parametrize("kwargs", [dict(gamma=0.0), dict(gamma=1.0), dict(delta=-1.0),
                                    dict(delta=float("nan"))])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        WatermarkConfig(**kwargs)


def test_auroc_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    members, others = rng.integers(0, 5, 30).astype(float), rng.integers(1, 6, 40).astype(float)
    expected = roc_auc_score(np.r_[np.ones(30), np.zeros(40)], -np.r_[members, others])
    assert loss_threshold_auroc(members, others) == pytest.approx(expected)
    assert loss_threshold_auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    acc, threshold = best_threshold_accuracy([0.1, 0.2], [0.3, 0.4])
    assert acc == 1.0 and 0.2 <= threshold < 0.3


@pytest.mark.parametrize("members, others, words", [([], [1.0], "non-empty"),
                                                    ([float("nan")], [1.0], "NaN")])
def test_bad_losses_are_refused(members, others, words):
    with pytest.raises(ValueError, match=words):
        loss_threshold_auroc(members, others)


def test_copy_fraction():
    train = torch.rand(20, 1, 8, 8)
    copies = train[:5] + 0.001 * torch.randn(5, 1, 8, 8)
    fresh = torch.rand(15, 1, 8, 8)
    assert copy_fraction(copies, train) == 1.0
    assert copy_fraction(torch.cat([copies, fresh]), train) == pytest.approx(5 / 20)
    with pytest.raises(ValueError, match="threshold"):
        copy_fraction(copies, train, threshold=1.5)
