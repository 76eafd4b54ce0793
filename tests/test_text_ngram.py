"""Tests of the character tokenizer, the Kneser-Ney n-gram model and the shared LM arithmetic."""

import math

import numpy as np
import pytest

from coursekit.text.lm import best_weight, bits_per_char, interpolate
from coursekit.text.ngram import KneserNeyLM, continuation_counts
from coursekit.text.tokenize import CharTokenizer

TEXT = ("the cat sat on the mat. the dog sat on the log. " * 8
        + "a bird sang in the tree while the cat slept.")


def test_tokenizer_round_trip_and_unknowns():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.vocab_size == len(set(TEXT)) + 1 and tok.unk_id == 0
    assert tok.decode(tok.encode(TEXT)) == TEXT
    ids = tok.encode("cat~")                      # '~' never seen in training
    assert ids[-1] == 0 and 0 not in ids[:-1]
    assert CharTokenizer.from_dict(tok.to_dict()).encode(TEXT) == tok.encode(TEXT)


def test_tokenizer_errors():
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer.from_text("")
    with pytest.raises(TypeError, match="str"):
        CharTokenizer.from_text("abc").encode([1, 2])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        CharTokenizer.from_text("abc").decode([7])


@pytest.fixture(scope="module")
def fitted():
    tok = CharTokenizer.from_text(TEXT)
    return tok, KneserNeyLM(order=5).fit(tok.encode(TEXT), tok.vocab_size)


@pytest.mark.parametrize("context", ["", "t", "the ca", "zzzz", "the cat sat on the m"])
def test_ngram_probabilities_sum_to_one(fitted, context):
    tok, lm = fitted
    p = np.exp(lm.logprobs(tok.encode(context)))
    assert p.shape == (tok.vocab_size,)
    assert abs(p.sum() - 1.0) < 1e-9 and (p > 0).all()   # unseen ids keep some mass


def test_ngram_vectorised_scores_match_one_at_a_time(fitted):
    tok, lm = fitted
    ids = tok.encode("the dog slept on the mat while a bird sang~")
    fast = lm.token_logprobs(ids)
    slow = np.array([lm.logprobs(ids[:t])[ids[t]] for t in range(1, len(ids))])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_bits_per_char_is_base_two_over_the_same_predictions(fitted):
    tok, lm = fitted
    ids = tok.encode(TEXT[:200])
    lp = lm.token_logprobs(ids)
    assert lp.shape == (len(ids) - 1,)
    assert lm.bits_per_char(ids) == pytest.approx(-lp.mean() / math.log(2))
    # a uniform model costs exactly log2(V) bits per character
    uniform = np.full(len(ids) - 1, -math.log(tok.vocab_size))
    assert bits_per_char(uniform) == pytest.approx(math.log2(tok.vocab_size))


def test_kneser_ney_beats_lower_orders_on_repetitive_text():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    bpc = [KneserNeyLM(order=n).fit(ids[:400], tok.vocab_size).bits_per_char(ids[400:])
           for n in (1, 3, 5)]
    assert bpc[0] > bpc[1] > bpc[2]


def test_continuation_counts_count_distinct_left_neighbours():
    # "b" follows "a" and "c": 2 left neighbours; "a" only ever follows "b"
    assert continuation_counts([0, 1, 2, 1, 0, 1], 1) == {(0,): 1, (1,): 2, (2,): 1}


def test_interpolation_is_a_distribution_and_never_worse_than_the_worse_model():
    rng = np.random.default_rng(0)
    pa, pb = rng.dirichlet(np.ones(5), size=50), rng.dirichlet(np.ones(5), size=50)
    mix = np.exp(interpolate(np.log(pa), np.log(pb), 0.3))
    np.testing.assert_allclose(mix.sum(axis=1), 1.0)
    a, b = np.log(pa[:, 0]), np.log(pb[:, 0])
    w = best_weight(a, b)
    assert bits_per_char(interpolate(a, b, w)) <= min(bits_per_char(a), bits_per_char(b)) + 1e-12


def test_ngram_errors():
    with pytest.raises(ValueError, match="order"):
        KneserNeyLM(order=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        KneserNeyLM(3).logprobs([1])
    with pytest.raises(ValueError, match="longer than order"):
        KneserNeyLM(3).fit([1, 2])
    with pytest.raises(ValueError, match="63-bit"):
        KneserNeyLM(12).fit(list(range(200)) * 2)
    lm = KneserNeyLM(3).fit([1, 2, 3, 1, 2, 3], vocab_size=4)
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        lm.token_logprobs([1, 9])
    with pytest.raises(ValueError, match="at least 2"):
        lm.token_logprobs([1])
    with pytest.raises(ValueError, match="weight"):
        interpolate([0.0], [0.0], 1.5)
