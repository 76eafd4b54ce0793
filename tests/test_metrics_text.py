"""BLEU agrees with sacrebleu (1e-4 BLEU points) and ROUGE with rouge-score (1e-6) on
hand-written pairs and on sentences of the offline corpus; perplexity; bad input."""

import random
import re

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from coursekit import data
from coursekit.metrics import BLEU, ROUGE, Perplexity, bleu, perplexity, rouge, sentence_bleu

TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]

HAND = [  # (hypothesis, reference): a customer-service setting
    ("Your refund of $25.00 was sent today.", "We sent your refund of $25.00 this morning."),
    ("Please restart the router and wait 5-10 minutes.",
     "Please restart your router, then wait 5-10 minutes."),
    ("The order #4521 ships on Monday.", "Order #4521 will ship on Monday."),
    ("Sorry!", "We are sorry for the delay."),
    ("I cannot find an account with that e-mail.\nCould you check it?",
     "I could not find an account for that e-mail address.\nPlease check it again."),
    ("", "Thank you for waiting."),
    ("Thanks &amp; goodbye &lt;3", "Thanks & goodbye <3"),
]


def _corpus_pairs(n=60, seed=0):
    """Sentences of the CPython docs as references; hypotheses drop, swap and repeat words."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", data.text("val"))
                 if 5 <= len(s.split()) <= 40]
    rng = random.Random(seed)
    refs = rng.sample(sentences, n)
    hyps = []
    for ref in refs:
        words = ref.split()
        if rng.random() < 0.5:
            del words[rng.randrange(len(words))]
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        hyps.append(" ".join(words))
    return hyps, refs


def _sets():
    yield "hand-written", [h for h, _ in HAND], [r for _, r in HAND]
    yield "corpus", *_corpus_pairs()


@pytest.mark.parametrize("name,hyps,refs", list(_sets()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_bleu_agrees_with_sacrebleu(name, hyps, refs):
    assert bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-4)
    assert bleu(hyps, refs, lowercase=True) == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score, abs=1e-4)
    for h, r in zip(hyps[:20], refs[:20]):
        assert sentence_bleu(h, r) == pytest.approx(sacrebleu.sentence_bleu(h, [r]).score,
                                                    abs=1e-4)
    acc = BLEU()
    acc.update(hyps[:3], refs[:3])
    acc.update(hyps[3:], refs[3:])
    assert acc.compute() == pytest.approx(bleu(hyps, refs), abs=1e-12)


def test_bleu_multiple_references():
    hyps, refs = _corpus_pairs(30, seed=1)
    second = [r.lower().replace("the ", "a ") for r in refs]
    ours = bleu(hyps, [[a, b] for a, b in zip(refs, second)])
    assert ours == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs, second]).score, abs=1e-4)


def test_corpus_bleu_is_not_the_mean_of_sentence_bleu():
    hyps, refs = [h for h, _ in HAND], [r for _, r in HAND]
    mean_sentence = sum(sentence_bleu(h, r) for h, r in zip(hyps, refs)) / len(hyps)
    assert abs(bleu(hyps, refs) - mean_sentence) > 1.0


@pytest.mark.parametrize("stem", [False, True])
@pytest.mark.parametrize("name,hyps,refs", list(_sets()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_rouge_agrees_with_rouge_score(name, hyps, refs, stem):
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=stem)
    expected = {t: 0.0 for t in TYPES}
    for h, r in zip(hyps, refs):
        for t, score in scorer.score(r, h).items():
            expected[t] += score.fmeasure / len(hyps)
    ours = rouge(hyps, refs, use_stemmer=stem)
    for t in TYPES:
        assert ours[t] == pytest.approx(expected[t], abs=1e-6), t
    acc = ROUGE(use_stemmer=stem)
    acc.update(hyps[:2], refs[:2])
    acc.update(hyps[2:], refs[2:])
    for t in TYPES:
        assert acc.compute()[t] == pytest.approx(ours[t], abs=1e-12)


def test_rouge_multiple_references_take_the_best():
    scorer = rouge_scorer.RougeScorer(TYPES)
    h, refs = HAND[1][0], [HAND[1][1], HAND[0][1]]
    expected = scorer.score_multi(refs, h)
    ours = rouge([h], [refs])
    for t in TYPES:
        assert ours[t] == pytest.approx(expected[t].fmeasure, abs=1e-6)


def test_perplexity():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    targets = torch.randint(0, 11, (3, 7), generator=g)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 11).double(), targets.reshape(-1))
    assert perplexity(logits, targets) == pytest.approx(float(ce.exp()), rel=1e-10)
    targets_padded = targets.clone()
    targets_padded[:, -2:] = -100
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 11).double(),
                                           targets_padded.reshape(-1), ignore_index=-100)
    assert perplexity(logits, targets_padded, ignore_index=-100) == pytest.approx(
        float(ce.exp()), rel=1e-10)
    acc = Perplexity()
    acc.update(logits[:1], targets[:1])
    acc.update(logits[1:], targets[1:])
    assert acc.compute() == pytest.approx(perplexity(logits, targets), rel=1e-12)
    assert not Perplexity.higher_is_better


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        bleu([], [])
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="single string"):
        bleu("a b c", "a b c")
    with pytest.raises(TypeError, match=r"hypotheses\[1\]"):
        bleu(["a", None], ["a", "b"])
    with pytest.raises(TypeError, match=r"references\[0\]"):
        rouge(["a"], [[]])
    with pytest.raises(ValueError, match=r"token ids in \[0, 5\)"):
        perplexity(torch.zeros(2, 5), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="targets.shape"):
        perplexity(torch.zeros(2, 5), torch.tensor([0, 1, 2]))
