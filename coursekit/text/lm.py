"""What every character language model of Chapter 7 offers, and the arithmetic shared by them.

The protocol (the n-gram model ``coursekit.text.ngram.KneserNeyLM`` and the transformer
``coursekit.models.gpt.GPT`` both speak it, so one sampler and one evaluation serve both):

* ``vocab_size``: V, the number of token ids (``coursekit.text.tokenize.CharTokenizer``).
* ``logprobs(context_ids) -> np.ndarray`` of shape ``(V,)``: the natural-log distribution of the
  next token given the ids so far (an empty context is allowed); ``exp`` of it sums to 1.
* ``token_logprobs(ids) -> np.ndarray`` of shape ``(len(ids) - 1,)``: ``log p(ids[t] | ids[:t])``
  for ``t = 1 .. len(ids) - 1`` (natural log). The first token is never scored, by every model,
  so two models' figures on one split count exactly the same predictions.
* ``bits_per_char(ids) -> float``: ``-mean(token_logprobs(ids)) / ln 2`` (base 2).

Mixing two models (``interpolate``) is linear in *probabilities*, not in log-probabilities:
``p(x) = w p_a(x) + (1 - w) p_b(x)`` is again a distribution, and by the concavity of the log its
cross-entropy is never worse than the same mixture of the two cross-entropies; it helps when the
models err on different characters.
"""

from __future__ import annotations

import math

import numpy as np

from coursekit.metrics.likelihood import bits_per_char

__all__ = ["bits_per_char", "interpolate", "best_weight"]


def interpolate(logp_a, logp_b, weight: float) -> np.ndarray:
    """``log(weight * p_a + (1 - weight) * p_b)``, elementwise and stable (``logaddexp``).

    Example:
        >>> round(float(np.exp(interpolate(np.log(0.2), np.log(0.6), 0.5))), 12)  # mean of p
        0.4
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    a, b = np.asarray(logp_a, np.float64), np.asarray(logp_b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two models scored different tokens: shapes {a.shape} and {b.shape}")
    if weight == 0.0:
        return b.copy()
    if weight == 1.0:
        return a.copy()
    return np.logaddexp(math.log(weight) + a, math.log1p(-weight) + b)


def best_weight(logp_a, logp_b, grid: int = 101) -> float:
    """The mixing weight of model a in ``[0, 1]`` (on a grid) that minimises the bits per character
    of ``interpolate``. Choose it on held-out text that is *not* the split you report on."""
    weights = np.linspace(0.0, 1.0, grid)
    scores = [bits_per_char(interpolate(logp_a, logp_b, float(w))) for w in weights]
    return float(weights[int(np.argmin(scores))])
