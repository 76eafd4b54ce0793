"""Text metrics: corpus BLEU, ROUGE and perplexity (Chapter 5).

* ``bleu``: corpus BLEU exactly as sacrebleu's ``corpus_bleu`` defaults compute it (Papineni et al.
  2002; Post 2018): 13a tokenisation, n-grams up to 4, clipped counts pooled over the *corpus*,
  the brevity penalty from the closest reference length, the "exp" smoothing of mteval-v13a, on a
  0-100 scale. Corpus BLEU is **not** the mean of sentence BLEUs: the counts are pooled before the
  geometric mean, and ``sentence_bleu`` (sacrebleu's default: effective order) differs; Chapter 5
  measures the gap.
* ``rouge``: ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (Lin 2004) as google's
  ``rouge-score`` computes them (``RougeScorer.score(target, prediction)``), averaged over pairs;
  ROUGE-Lsum treats newlines as sentence breaks.
* ``perplexity``: ``exp`` of the mean per-token negative log-likelihood.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

from coursekit.metrics._base import MeanMetric, Metric, check_tensor

__all__ = ["tokenize_13a", "bleu_stats", "bleu_from_stats", "bleu", "sentence_bleu",
           "rouge_tokenize", "rouge_pair", "rouge", "perplexity", "BLEU", "ROUGE", "Perplexity"]

BLEU_ORDER = 4  # n-grams of 1..4 words, as in Papineni et al. 2002

# mteval-v13a's tokenisation (sacrebleu's TokenizerRegexp): punctuation and symbols become tokens,
# periods and commas too unless they sit between digits, a dash after a digit.
_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def _check_texts(hypotheses, references) -> list[list[str]]:
    """Validate the text lists; return one list of references per hypothesis."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists of strings, not a single string "
                        "(wrap one sentence in a list)")
    hypotheses, references = list(hypotheses), list(references)
    if not hypotheses:
        raise ValueError("hypotheses is empty")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: give one "
                         f"reference (or one list of references) per hypothesis")
    refs = []
    for i, (hyp, ref) in enumerate(zip(hypotheses, references)):
        if not isinstance(hyp, str):
            raise TypeError(f"hypotheses[{i}] must be a string, got {type(hyp).__name__}")
        ref = [ref] if isinstance(ref, str) else list(ref)
        if not ref or not all(isinstance(r, str) for r in ref):
            raise TypeError(f"references[{i}] must be a string or a non-empty list of strings, "
                            f"got {references[i]!r}")
        refs.append(ref)
    return refs


# ------------------------------------------------------------------------------------------- BLEU

def tokenize_13a(line: str) -> str:
    """sacrebleu's default tokenisation (mteval-v13a), returned as space-separated tokens.

    Example:
        >>> tokenize_13a("Your order #1234 ships on 3-5 May, thanks.")
        'Your order # 1234 ships on 3 - 5 May , thanks .'
    """
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                .replace("&gt;", ">"))
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


def _ngrams(tokens: list[str], order: int) -> Counter:
    """Counts of all n-grams, n = 1..order, as tuples of tokens."""
    counts: Counter = Counter()
    for n in range(1, order + 1):
        counts.update(zip(*(tokens[i:] for i in range(n))))
    return counts


def bleu_stats(hypothesis: str, references: Sequence[str], lowercase: bool = False) -> list[int]:
    """Sufficient statistics of one segment: ``[hyp_len, ref_len, correct_1..4, total_1..4]``.

    ``correct_n`` counts hypothesis n-grams clipped by the maximum count in any one reference;
    ``ref_len`` is the reference length closest to the hypothesis length (the shorter on ties).
    Corpus BLEU sums these over segments before combining them.
    """
    prep = (lambda s: tokenize_13a(s.lower())) if lowercase else tokenize_13a
    hyp_tokens = prep(hypothesis).split()
    ref_counts: Counter | None = None
    ref_lens = []
    for ref in references:
        tokens = prep(ref).split()
        ref_lens.append(len(tokens))
        counts = _ngrams(tokens, BLEU_ORDER)
        if ref_counts is None:
            ref_counts = counts
        else:  # several references: clip by the largest count in any one of them
            for gram, count in counts.items():
                if count > ref_counts[gram]:
                    ref_counts[gram] = count
    hyp_len = len(hyp_tokens)
    ref_len = min(ref_lens, key=lambda r: (abs(hyp_len - r), r))
    correct = [0] * BLEU_ORDER
    for gram, count in _ngrams(hyp_tokens, BLEU_ORDER).items():
        matched = ref_counts.get(gram)
        if matched:
            correct[len(gram) - 1] += min(count, matched)
    total = [max(hyp_len - n, 0) for n in range(BLEU_ORDER)]  # n-grams of order n + 1
    return [hyp_len, ref_len, *correct, *total]


def bleu_from_stats(stats: Sequence[int], effective_order: bool = False) -> float:
    """BLEU (0-100) from summed statistics, with sacrebleu's "exp" smoothing.

    ``BP * exp(mean_n log p_n)``; ``BP = exp(1 - r / c)`` when the hypotheses (length ``c``) are
    shorter than the references (``r``). A precision with no match is replaced by
    ``1 / (2^k total_n)`` for the k-th such order (mteval-v13a). With ``effective_order`` the
    mean runs only over orders that have n-grams (sacrebleu's sentence BLEU).
    """
    sys_len, ref_len = stats[0], stats[1]
    correct, total = stats[2: 2 + BLEU_ORDER], stats[2 + BLEU_ORDER:]
    if not any(correct):
        return 0.0
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len else 0.0)
    precisions = [0.0] * BLEU_ORDER
    smooth, order = 1.0, BLEU_ORDER
    for n in range(BLEU_ORDER):
        if total[n] == 0:
            break
        if effective_order:
            order = n + 1
        if correct[n] == 0:
            smooth *= 2
            precisions[n] = 100.0 / (smooth * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    # sacrebleu's my_log: log(0) is a large negative number, so an order without n-grams gives ~0
    logs = [math.log(p) if p > 0 else -9999999999 for p in precisions[:order]]
    return bp * math.exp(sum(logs) / order)


def bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
         lowercase: bool = False) -> float:
    """Corpus BLEU, equal to ``sacrebleu.corpus_bleu(hypotheses, [references]).score``.

    Args:
        hypotheses: one generated sentence per segment.
        references: per segment, a reference string or a list of reference strings (note: this
            is per *segment*; sacrebleu takes a list of reference *streams* instead).
        lowercase: compare case-insensitively.

    Returns:
        BLEU on a 0-100 scale.

    Raises:
        ValueError / TypeError: empty lists, different lengths, non-string items.

    Example:
        >>> hyps = ["Your refund was sent today.", "Please restart the router."]
        >>> refs = ["Your refund was sent this morning.", "Please restart your router."]
        >>> round(bleu(hyps, refs), 4)
        36.6567
    """
    refs = _check_texts(hypotheses, references)
    totals = [0] * (2 + 2 * BLEU_ORDER)
    for hyp, ref in zip(hypotheses, refs):
        totals = [a + b for a, b in zip(totals, bleu_stats(hyp, ref, lowercase))]
    return bleu_from_stats(totals)


def sentence_bleu(hypothesis: str, references: str | Sequence[str],
                  effective_order: bool = True) -> float:
    """BLEU of one sentence, as ``sacrebleu.sentence_bleu`` (effective order by default)."""
    refs = _check_texts([hypothesis], [references])[0]
    return bleu_from_stats(bleu_stats(hypothesis, refs), effective_order=effective_order)


class BLEU(Metric):
    """Corpus BLEU over batches of segments: the state is 10 integers (constant memory)."""

    higher_is_better = True

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase  # compare case-insensitively
        super().__init__()

    def reset(self) -> None:
        self.stats = [0] * (2 + 2 * BLEU_ORDER)  # summed bleu_stats of all segments so far

    def update(self, hypotheses, references) -> None:
        refs = _check_texts(hypotheses, references)
        for hyp, ref in zip(hypotheses, refs):
            self.stats = [a + b for a, b in zip(self.stats, bleu_stats(hyp, ref, self.lowercase))]

    def compute(self) -> float:
        if not self.stats[0] and not self.stats[1]:
            raise RuntimeError("BLEU.compute() called before any update()")
        return bleu_from_stats(self.stats)


# ------------------------------------------------------------------------------------------ ROUGE

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokenize(text: str, stemmer=None) -> list[str]:
    """rouge-score's tokeniser: lowercase, keep runs of ``[a-z0-9]``, stem words longer than 3.

    Example:
        >>> rouge_tokenize("Café orders: 2 shipped!")
        ['caf', 'orders', '2', 'shipped']
    """
    tokens = _NON_ALNUM.sub(" ", text.lower()).split()
    if stemmer is not None:
        tokens = [stemmer.stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if t]


def _f(overlap: float, n_pred: int, n_target: int) -> float:
    precision = overlap / max(n_pred, 1)
    recall = overlap / max(n_target, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _rouge_n(target: list[str], pred: list[str], n: int) -> float:
    t = Counter(tuple(target[i: i + n]) for i in range(len(target) - n + 1))
    p = Counter(tuple(pred[i: i + n]) for i in range(len(pred) - n + 1))
    overlap = sum(min(count, p[gram]) for gram, count in t.items())
    return _f(overlap, sum(p.values()), sum(t.values()))


def _lcs_table(a: list[str], b: list[str]) -> list[list[int]]:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        row, prev = table[i], table[i - 1]
        for j in range(1, len(b) + 1):
            row[j] = prev[j - 1] + 1 if a[i - 1] == b[j - 1] else max(prev[j], row[j - 1])
    return table


def _lcs_indices(ref: list[str], cand: list[str]) -> list[int]:
    """Indices into ``ref`` of one longest common subsequence (rouge-score's backtrack)."""
    table = _lcs_table(ref, cand)
    i, j, out = len(ref), len(cand), []
    while i > 0 and j > 0:
        if ref[i - 1] == cand[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out[::-1]


def _rouge_l(target: list[str], pred: list[str]) -> float:
    if not target or not pred:
        return 0.0
    return _f(_lcs_table(target, pred)[-1][-1], len(pred), len(target))


def _rouge_lsum(target_sents: list[list[str]], pred_sents: list[list[str]]) -> float:
    """Summary-level LCS (Lin 2004, section 3.2): union LCS of each reference sentence against
    all candidate sentences, each token counted at most as often as it occurs on both sides."""
    m, n = sum(map(len, target_sents)), sum(map(len, pred_sents))
    if not m or not n:
        return 0.0
    left_t = Counter(t for s in target_sents for t in s)
    left_p = Counter(t for s in pred_sents for t in s)
    hits = 0
    for ref in target_sents:
        union = sorted(set().union(*(_lcs_indices(ref, c) for c in pred_sents)))
        for token in (ref[i] for i in union):
            if left_p[token] > 0 and left_t[token] > 0:
                hits += 1
                left_p[token] -= 1
                left_t[token] -= 1
    return _f(hits, n, m)


def _stemmer(use_stemmer: bool):
    if not use_stemmer:
        return None
    try:
        from nltk.stem import porter
    except ImportError as err:  # pragma: no cover - nltk comes with rouge-score
        raise ImportError("stemming needs nltk's Porter stemmer: pip install nltk") from err
    return porter.PorterStemmer()


def rouge_pair(hypothesis: str, reference: str, use_stemmer: bool = False,
               stemmer=None) -> dict[str, float]:
    """ROUGE F-measures of one pair, equal to ``RougeScorer(types).score(reference, hypothesis)``.

    Example:
        >>> s = rouge_pair("the refund was sent", "your refund was sent today")
        >>> round(s["rouge1"], 4), round(s["rouge2"], 4), round(s["rougeL"], 4)
        (0.6667, 0.5714, 0.6667)
    """
    stemmer = stemmer if stemmer is not None else _stemmer(use_stemmer)
    target, pred = rouge_tokenize(reference, stemmer), rouge_tokenize(hypothesis, stemmer)
    scores = {"rouge1": _rouge_n(target, pred, 1), "rouge2": _rouge_n(target, pred, 2),
              "rougeL": _rouge_l(target, pred)}
    if "\n" not in reference and "\n" not in hypothesis:
        # one sentence each: the union LCS is the LCS, and every LCS token is counted on both
        # sides, so ROUGE-Lsum equals ROUGE-L
        scores["rougeLsum"] = scores["rougeL"]
    else:
        def sentences(text):
            return [rouge_tokenize(s, stemmer) for s in text.split("\n") if s]

        scores["rougeLsum"] = _rouge_lsum(sentences(reference), sentences(hypothesis))
    return scores


def _rouge_sums(hypotheses, references, stemmer) -> dict[str, float]:
    refs = _check_texts(hypotheses, references)
    sums = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, ref_list in zip(hypotheses, refs):
        # several references: the best F per type, like rouge-score's score_multi
        scores = [rouge_pair(hyp, r, stemmer=stemmer) for r in ref_list]
        for key in ROUGE_TYPES:
            sums[key] += max(s[key] for s in scores)
    return sums


def rouge(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
          use_stemmer: bool = False) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures over hypothesis/reference pairs.

    Args:
        hypotheses: generated texts.
        references: per hypothesis a reference, or a list of them (the best score is kept).
        use_stemmer: apply the Porter stemmer to words longer than 3 letters (rouge-score's
            ``use_stemmer=True``; needs nltk).

    Returns:
        ``{"rouge1", "rouge2", "rougeL", "rougeLsum"}`` -> mean F-measure in ``[0, 1]``.

    Example:
        >>> r = rouge(["the refund was sent"], ["your refund was sent today"])
        >>> round(r["rouge1"], 4)
        0.6667
    """
    sums = _rouge_sums(hypotheses, references, _stemmer(use_stemmer))
    return {key: value / len(hypotheses) for key, value in sums.items()}


class ROUGE(Metric):
    """Mean ROUGE F-measures over batches (constant memory: four sums and a count)."""

    higher_is_better = True

    def __init__(self, use_stemmer: bool = False):
        self.stemmer = _stemmer(use_stemmer)  # None, or nltk's Porter stemmer
        super().__init__()

    def reset(self) -> None:
        self.sums = dict.fromkeys(ROUGE_TYPES, 0.0)  # summed F-measures per ROUGE type
        self.count = 0  # pairs seen

    def update(self, hypotheses, references) -> None:
        for key, value in _rouge_sums(hypotheses, references, self.stemmer).items():
            self.sums[key] += value
        self.count += len(hypotheses)

    def compute(self) -> dict[str, float]:
        if not self.count:
            raise RuntimeError("ROUGE.compute() called before any update()")
        return {key: value / self.count for key, value in self.sums.items()}


# ------------------------------------------------------------------------------------- perplexity

def _token_nll(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None):
    check_tensor("logits", logits)
    if not torch.is_tensor(targets) or targets.is_floating_point():
        raise TypeError(f"targets must be an integer tensor of token ids, got "
                        f"{getattr(targets, 'dtype', type(targets).__name__)}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits must be targets.shape + (V,), got {tuple(logits.shape)} and "
                         f"targets {tuple(targets.shape)}")
    mask = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else \
        targets != ignore_index
    V = logits.shape[-1]
    kept = targets[mask]
    if kept.numel() == 0:
        raise ValueError("no tokens to score (all targets are ignore_index)")
    if int(kept.min()) < 0 or int(kept.max()) >= V:
        raise ValueError(f"targets must be token ids in [0, {V}), got values in "
                         f"[{int(kept.min())}, {int(kept.max())}]")
    log_probs = torch.log_softmax(logits.double(), dim=-1)[mask]  # (n_tokens, V)
    return -log_probs.gather(1, kept[:, None]).squeeze(1)  # (n_tokens,)


def perplexity(logits: torch.Tensor, targets: torch.Tensor,
               ignore_index: int | None = None) -> float:
    """``exp`` of the mean negative log-likelihood per token (all tokens pooled).

    Args:
        logits: ``(..., V)`` unnormalised scores (log-probabilities work too).
        targets: ``(...)`` integer token ids.
        ignore_index: a target id to skip (padding).

    Example:
        >>> perplexity(torch.zeros(2, 5, 10), torch.zeros(2, 5, dtype=torch.long))  # uniform
        10.000000000000002
    """
    return math.exp(float(_token_nll(logits, targets, ignore_index).mean()))


class Perplexity(MeanMetric):
    """Perplexity over batches: ``exp`` of the mean per-token NLL of all tokens seen."""

    higher_is_better = False

    def __init__(self, ignore_index: int | None = None):
        self.ignore_index = ignore_index  # a target id to skip (padding)
        super().__init__()

    def _values(self, logits, targets):
        return _token_nll(logits, targets, self.ignore_index)

    def compute(self) -> float:
        return math.exp(super().compute())
