"""Evaluation metrics for generative models (Chapter 5).

Each metric is a pure function over tensors (or lists of strings) plus a class that accumulates
over batches in bounded memory and says whether ``higher_is_better``:

==================  ==========================================  ==================================
module              functions                                   classes
==================  ==========================================  ==================================
``image``           ``psnr``, ``ssim``                          ``PSNR``, ``SSIM``
``distribution``    ``fid``, ``kid``, ``precision_recall``,     ``FID``, ``KID``,
                    ``inception_score``                         ``PrecisionRecall``,
                                                                ``InceptionScore``
``likelihood``      ``elbo``, ``iwae_nll``, ``bits_per_dim``,   ``ELBO``, ``IWAENLL``,
                    ``bits_per_char``                           ``BitsPerDim``
``text``            ``bleu``, ``sentence_bleu``, ``rouge``,     ``BLEU``, ``ROUGE``,
                    ``perplexity``                              ``Perplexity``
``classification``  ``auroc``, ``gzsl_scores``,                 (none: one number per test set)
                    ``harmonic_mean``
==================  ==========================================  ==================================

Features for the distribution metrics come from ``coursekit.features``.
"""

from coursekit.metrics._base import MeanMetric, Metric
from coursekit.metrics.classification import auroc, gzsl_scores, harmonic_mean
from coursekit.metrics.distribution import (
    FID, KID, InceptionScore, PrecisionRecall, fid, fid_from_stats, fid_same_distribution,
    gaussian_stats, inception_score, kid, precision_recall,
)
from coursekit.metrics.image import PSNR, SSIM, psnr, ssim
from coursekit.metrics.likelihood import (
    ELBO, IWAENLL, BitsPerDim, bits_per_char, bits_per_dim, elbo, iwae_nll,
)
from coursekit.metrics.text import (
    BLEU, ROUGE, Perplexity, bleu, perplexity, rouge, rouge_pair, sentence_bleu,
)

__all__ = [
    "Metric", "MeanMetric",
    "psnr", "ssim", "PSNR", "SSIM",
    "fid", "fid_from_stats", "fid_same_distribution", "gaussian_stats", "kid",
    "precision_recall", "inception_score", "FID", "KID", "PrecisionRecall", "InceptionScore",
    "elbo", "iwae_nll", "bits_per_dim", "bits_per_char", "ELBO", "IWAENLL", "BitsPerDim",
    "auroc", "gzsl_scores", "harmonic_mean",
    "bleu", "sentence_bleu", "rouge", "rouge_pair", "perplexity", "BLEU", "ROUGE", "Perplexity",
]
