"""Tests of the character GPT (coursekit.models.gpt) and the sampler (coursekit.text.sampling)."""

import math

import numpy as np
import pytest
import torch

from coursekit.models.gpt import GPT, GPTConfig, make_windows
from coursekit.text.ngram import KneserNeyLM
from coursekit.text.sampling import filter_logprobs, sample, sample_text
from coursekit.text.tokenize import CharTokenizer
from coursekit.train import TrainConfig, fit

TINY = dict(vocab_size=12, block_size=16, n_layer=2, n_head=2, n_embd=16)


def test_a_future_token_never_changes_a_past_logit():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).eval()
    ids = torch.randint(0, 12, (3, 10))
    base = model(ids)
    for t in range(10):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % 12          # alter the token at position t only
        out = model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert (out[:, t:] - base[:, t:]).abs().max() > 1e-4   # ...and it does change the rest


def test_gpt_learns_a_repeating_pattern_through_fit():
    windows = make_windows(list(range(1, 9)) * 40, block_size=16, stride=4)
    model = GPT(GPTConfig(**TINY))
    result = fit(model, windows, TrainConfig(epochs=6, batch_size=16, lr=1e-2, device="cpu"))
    ids = list(range(1, 9)) * 4
    assert result.history.losses["bpc"][-1] < result.history.losses["bpc"][0]
    assert model.bits_per_char(ids) < 1.0 < math.log2(12)


def test_gpt_scores_match_one_prediction_at_a_time_and_are_base_two():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).eval()
    ids = np.random.default_rng(0).integers(0, 12, 50)
    lp = model.token_logprobs(ids, batch_size=2)
    assert lp.shape == (49,) and np.isfinite(lp).all()
    # within the first block every prediction sees its whole prefix
    slow = [model.logprobs(ids[:t])[ids[t]] for t in range(1, 17)]
    np.testing.assert_allclose(lp[:16], slow, atol=1e-5)
    assert model.bits_per_char(ids) == pytest.approx(-lp.mean() / math.log(2))
    assert np.exp(model.logprobs([])).sum() == pytest.approx(1.0)


def test_gpt_errors():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=3)
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 12\)"):
        model(torch.full((1, 3), 12))
    with pytest.raises(ValueError, match="at least"):
        make_windows([1, 2, 3], block_size=8)


@pytest.mark.parametrize("kind", ["ngram", "gpt"])
def test_sampling_is_deterministic_under_a_seed(kind):
    text = "one two three four five six seven eight nine ten " * 6
    tok = CharTokenizer.from_text(text)
    if kind == "ngram":
        model = KneserNeyLM(order=4).fit(tok.encode(text), tok.vocab_size)
    else:
        torch.manual_seed(0)
        model = GPT(GPTConfig(**{**TINY, "vocab_size": tok.vocab_size}))
    runs = [sample_text(model, tok, "one ", 30, temperature=0.9, top_p=0.95, seed=s)
            for s in (1, 1, 2)]
    assert runs[0] == runs[1] and len(runs[0]) == 30
    assert runs[0] != runs[2]


def test_filters_keep_the_right_tokens():
    logp = np.log([0.4, 0.3, 0.2, 0.1])
    assert np.isfinite(filter_logprobs(logp, top_k=2)).sum() == 2
    assert np.isfinite(filter_logprobs(logp, top_p=0.7)).sum() == 2     # 0.4 + 0.3 reaches 0.7
    assert np.isfinite(filter_logprobs(logp, top_p=0.71)).sum() == 3
    assert np.isfinite(filter_logprobs(logp, top_p=0.01)).sum() == 1    # never empty
    cold = np.exp(filter_logprobs(logp, temperature=0.01))
    hot = np.exp(filter_logprobs(logp, temperature=100.0))
    assert cold[0] > 0.999 and np.allclose(hot, 0.25, atol=0.01)
    lm = KneserNeyLM(order=2).fit([1, 2, 3] * 5, vocab_size=4)
    assert sample(lm, [1], 5, temperature=1e-3, seed=0) == [2, 3, 1, 2, 3]


def test_sampling_errors():
    with pytest.raises(ValueError, match="temperature"):
        filter_logprobs(np.zeros(3), temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logprobs(np.zeros(3), top_p=1.5)
    with pytest.raises(ValueError, match="top_k"):
        filter_logprobs(np.zeros(3), top_k=0)
    lm = KneserNeyLM(order=2).fit([1, 2, 3] * 5, vocab_size=4)
    with pytest.raises(ValueError, match="non-negative"):
        sample(lm, [1], -1)
