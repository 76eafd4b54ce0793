"""Chapter 10's tools: the watermark's z-statistic, membership inference, near-copy rates."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from coursekit.risks.membership import best_threshold_accuracy, copy_fraction, loss_threshold_auroc
from coursekit.risks.watermark import (GreenLists, WatermarkConfig, WatermarkedLM, detect,
                                       green_count, z_score)
from coursekit.text.ngram import KneserNeyLM
from coursekit.text.sampling import sample


def test_green_lists_are_keyed_and_sized():
    config = WatermarkConfig(gamma=0.25, context_width=2)
    g = GreenLists(40, config)
    assert g([1, 2]).shape == (40,) and g([1, 2]).sum() == 10
    assert np.array_equal(g([1, 2]), GreenLists(40, config)([7, 1, 2]))
    assert not np.array_equal(g([1, 2]), g([2, 2]))
    assert not np.array_equal(g([1, 2]), GreenLists(40, WatermarkConfig(key=1, context_width=2))(
        [1, 2]))
    with pytest.raises(ValueError, match="2 previous tokens"):
        g([1])


@pytest.mark.parametrize("width, repeats", [(1, False), (2, True)])
def test_z_is_standard_normal_on_random_text(width, repeats):
    g = GreenLists(60, WatermarkConfig(context_width=width, ignore_repeats=repeats))
    rng = np.random.default_rng(0)
    z = np.array([z_score(rng.integers(0, 60, 200 + width), g) for _ in range(1500)])
    # mean 0 and variance 1: the standard errors are 0.026 and about 0.037
    assert abs(z.mean()) < 0.13 and abs(z.var() - 1.0) < 0.18
    # and the one-sided tail beyond 2 holds about 2.3 % (a wrong variance would move it a lot)
    assert 0.008 < (z >= 2).mean() < 0.04


def test_detection_threshold_is_honoured():
    config = WatermarkConfig(gamma=0.5, z_threshold=4.0, context_width=1, ignore_repeats=False)
    g = GreenLists(4, config)
    ids = [0]
    for _ in range(16):
        ids.append(int(np.flatnonzero(g(ids))[0]))          # all green: z = sqrt(16) = 4
    assert z_score(ids, g) == pytest.approx(4.0)
    assert detect(ids, g)
    assert not detect(ids[:16], g)                          # z = sqrt(15) < 4
    assert green_count(ids, g) == (16, 16)
    # scored once per (context, token) pair: a cycle of 4 distinct pairs counts 4 times at most
    once = GreenLists(4, WatermarkConfig(gamma=0.5, context_width=1))
    assert green_count([0, 1, 2, 3] * 10, once)[1] == 4


def test_watermarked_generation_is_detected_and_costs_bits():
    rng = np.random.default_rng(1)
    text = rng.integers(0, 30, 3000).tolist()
    lm = KneserNeyLM(order=2).fit(text, vocab_size=30)
    config = WatermarkConfig()
    wm = WatermarkedLM(lm, config)
    prompt = [0, 1, 2, 3]
    marked = sample(wm, prompt, 200, seed=0)
    plain = sample(lm, prompt, 200, seed=0)
    assert detect(prompt + marked, wm.green)
    assert not detect(prompt + plain, wm.green)
    held_out = rng.integers(0, 30, 400).tolist()
    assert wm.bits_per_char(held_out) > lm.bits_per_char(held_out)
    assert np.allclose(np.exp(wm.logprobs([3, 4])).sum(), 1.0)


@pytest.mark.parametrize("bad, words", [([0, 1, 2, 3], "more than 4"), ([0, 1, 2, 3, 99],
                                        "must lie in"), ([[0, 1]], "1-D")])
def test_bad_text_is_refused(bad, words):
    g = GreenLists(10, WatermarkConfig())
    with pytest.raises(ValueError, match=words):
        z_score(bad, g)


@pytest.mark.parametrize("kwargs", [dict(gamma=0.0), dict(gamma=1.0), dict(delta=-1.0),
                                    dict(delta=float("nan")), dict(context_width=0)])
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
