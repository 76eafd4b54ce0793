"""Sampling text from a language model: temperature, top-k and nucleus (top-p) (Chapter 7).

Works with any model of the ``coursekit.text.lm`` protocol (``vocab_size`` and
``logprobs(context_ids) -> (V,)`` natural-log next-token distribution): the Kneser-Ney n-gram and
the GPT are sampled by the same code.

* ``filter_logprobs(logp, temperature, top_k, top_p)``: the distribution actually sampled, as
  normalised log-probabilities (``-inf`` for the tokens removed). Temperature ``tau`` divides the
  log-probabilities (``tau < 1`` sharpens towards the most likely token, ``tau > 1`` flattens
  towards uniform); top-k keeps the ``k`` most likely tokens; top-p keeps the smallest set of most
  likely tokens whose probability reaches ``p`` (Holtzman et al. 2020). Order: temperature, then
  top-k, then top-p, then renormalise.
* ``sample(model, context_ids, n, ..., seed)``: ``n`` new ids, one at a time; the same seed gives
  the same ids (a ``numpy.random.Generator`` of its own, so it touches no global RNG).
* ``sample_text(model, tokenizer, prompt, n, ...)``: the same on strings.
* ``distinct_ngrams(text, n)``: the share of distinct character n-grams, a simple diversity score.
"""

from __future__ import annotations

import numpy as np

__all__ = ["filter_logprobs", "sample", "sample_text", "distinct_ngrams"]


def filter_logprobs(logp, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None) -> np.ndarray:
    """The next-token distribution after temperature, top-k and top-p, as log-probabilities.

    Args:
        logp: (V,) log-probabilities (or logits: only differences matter).
        temperature: > 0; 1 leaves the distribution unchanged.
        top_k: keep the k most likely tokens (None: all).
        top_p: keep the smallest most-likely set with total probability >= top_p, in (0, 1].

    Example:
        >>> p = np.exp(filter_logprobs(np.log([0.5, 0.3, 0.15, 0.05]), top_p=0.8))
        >>> np.round(p, 3).tolist()
        [0.625, 0.375, 0.0, 0.0]
    """
    logp = np.asarray(logp, dtype=np.float64)
    if logp.ndim != 1 or logp.size == 0:
        raise ValueError(f"logp must be a non-empty 1-D array, got shape {logp.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and not (isinstance(top_k, (int, np.integer)) and top_k >= 1):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1] or be None, got {top_p}")
    z = logp / temperature
    z = z - np.logaddexp.reduce(z)                          # normalised log p_tau
    order = np.argsort(-z, kind="stable")                   # most likely first
    keep = np.ones(z.size, dtype=bool)
    if top_k is not None and top_k < z.size:
        keep[order[top_k:]] = False
    if top_p is not None:
        cumulative = np.cumsum(np.exp(z[order]))
        # the first index where the running total reaches top_p is the last one kept
        last = int(np.searchsorted(cumulative, top_p - 1e-12))
        keep[order[last + 1:]] = False
    z = np.where(keep, z, -np.inf)
    return z - np.logaddexp.reduce(z[keep])


def sample(model, context_ids, n: int, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, seed: int = 0) -> list[int]:
    """``n`` ids drawn one at a time from ``model`` after ``context_ids`` (returned without the
    context). Deterministic for a given seed.

    Example:
        >>> from coursekit.text.ngram import KneserNeyLM
        >>> lm = KneserNeyLM(order=3).fit([1, 2, 3] * 20, vocab_size=4)
        >>> sample(lm, [1, 2], 6, temperature=0.1, seed=0)
        [3, 1, 2, 3, 1, 2]
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = np.random.default_rng(seed)
    ids = [int(i) for i in context_ids]
    out: list[int] = []
    for _ in range(n):
        p = np.exp(filter_logprobs(model.logprobs(ids), temperature, top_k, top_p))
        token = int(rng.choice(p.size, p=p / p.sum()))
        ids.append(token)
        out.append(token)
    return out


def sample_text(model, tokenizer, prompt: str, n: int, **kwargs) -> str:
    """``n`` characters sampled after ``prompt`` (``kwargs`` as in ``sample``), without the prompt."""
    return tokenizer.decode(sample(model, tokenizer.encode(prompt), n, **kwargs))


def distinct_ngrams(text: str, n: int = 4) -> float:
    """Distinct character n-grams / all character n-grams of ``text`` (1.0: no repetition).

    Example:
        >>> distinct_ngrams("abababab", 2), distinct_ngrams("abcdefgh", 2)
        (0.2857142857142857, 1.0)
    """
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    if not grams:
        raise ValueError(f"text of length {len(text)} has no {n}-grams")
    return len(set(grams)) / len(grams)
