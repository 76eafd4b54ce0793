"""Zero-shot learning on the digits with seven-segment attributes: direct attribute prediction
(DAP) against a generative approach, scored the way generalised zero-shot learning is (Chapter 6).

Zero-shot: some classes have *no* training image; each class, seen or not, is described by side
information, here which of the seven segments of a calculator display it lights::

     aaa
    f   b
     ggg
    e   c
     ddd

* DAP (Lampert, Nickisch and Harmeling 2009): one probabilistic classifier per attribute, trained
  on the seen classes; a test image goes to the class whose attribute code is most probable,
  ``argmax_c sum_m log p(a_m = a_m^c | x)``.
* The generative approach (in the spirit of feature-generating zero-shot methods, e.g. Xian et al.
  2018, Mishra et al. 2018): a VAE conditioned on the attribute code learns ``p(x | z, a)`` from
  the seen classes; images of the unseen classes are then *synthesised* from their codes, and an
  ordinary classifier is trained on real seen images plus synthetic unseen ones.

Generalised zero-shot evaluation (Xian et al. 2018) predicts among *all* classes and reports the
per-class mean accuracy on seen-class and on unseen-class test images and their harmonic mean
``H = 2 s u / (s + u)``, which is high only when both are.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data.levels import to_levels
from coursekit.losses import gaussian_kl, log_categorical, reparameterize
from coursekit.metrics.classification import gzsl_scores, harmonic_mean
from coursekit.models.layers import check_batch
from coursekit.models.base import TrainableModel
from coursekit.utils import eval_mode

__all__ = ["SEGMENTS", "SEVEN_SEGMENT", "unseen_splits", "harmonic_mean", "gzsl_scores",
           "dap_predict", "AttributeVAEConfig", "AttributeVAE"]

SEGMENTS = ("a", "b", "c", "d", "e", "f", "g")  # top, upper right, lower right, bottom,
#                                                  lower left, upper left, middle
# Row c: which segments digit c lights on a seven-segment display (7 with three segments, 9 with
# the bottom segment, the common calculator forms). All ten codes differ.
SEVEN_SEGMENT = np.array([
    [1, 1, 1, 1, 1, 1, 0],  # 0
    [0, 1, 1, 0, 0, 0, 0],  # 1
    [1, 1, 0, 1, 1, 0, 1],  # 2
    [1, 1, 1, 1, 0, 0, 1],  # 3
    [0, 1, 1, 0, 0, 1, 1],  # 4
    [1, 0, 1, 1, 0, 1, 1],  # 5
    [1, 0, 1, 1, 1, 1, 1],  # 6
    [1, 1, 1, 0, 0, 0, 0],  # 7
    [1, 1, 1, 1, 1, 1, 1],  # 8
    [1, 1, 1, 1, 0, 1, 1],  # 9
], dtype=np.int64)


def unseen_splits(num_classes: int = 10, num_unseen: int = 3) -> list[tuple[int, ...]]:
    """Every choice of ``num_unseen`` unseen classes, in lexicographic order (10 choose 3 = 120).

    Example:
        >>> len(unseen_splits()), unseen_splits()[0]
        (120, (0, 1, 2))
    """
    if not 0 < num_unseen < num_classes:
        raise ValueError(f"need 0 < num_unseen < num_classes, got {num_unseen} and {num_classes}")
    return list(itertools.combinations(range(num_classes), num_unseen))


def _check_zsl(labels: np.ndarray, unseen, attributes: np.ndarray) -> None:
    k = len(attributes)
    bad = [c for c in unseen if not 0 <= c < k]
    if bad:
        raise ValueError(f"unseen classes must lie in 0..{k - 1}, got {bad}")
    leaked = sorted(set(labels.tolist()) & set(unseen))
    if leaked:
        raise ValueError(f"the training labels contain unseen class(es) {leaked}: zero-shot "
                         f"training sees only the seen classes")


def dap_predict(train_x, train_labels, test_x, unseen, attributes=SEVEN_SEGMENT,
                C: float = 1.0) -> np.ndarray:
    """Direct attribute prediction (Lampert et al. 2009) among all classes.

    One logistic regression per attribute on the seen classes' images; a test image's score for
    class ``c`` is ``sum_m log p(a_m = a_m^c | x)`` (a uniform prior over classes and attribute
    values). An attribute that is constant over the seen classes cannot be learned; its
    probability is that constant, softened to ``0.99``.

    Args:
        train_x: ``(N, D)`` features of seen-class images. train_labels: ``(N,)`` their classes.
        test_x: ``(M, D)``. unseen: the classes without training images.
        attributes: ``(K, A)`` binary codes, one row per class.

    Returns:
        ``(M,)`` predicted classes in ``0..K-1``.
    """
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    train_labels = np.asarray(train_labels)
    if len(train_x) != len(train_labels):
        raise ValueError(f"train_x has {len(train_x)} rows but train_labels {len(train_labels)}")
    _check_zsl(train_labels, unseen, attributes)
    targets = attributes[train_labels]                                    # (N, A)
    log_p1 = np.empty((len(test_x), attributes.shape[1]))                 # (M, A)
    for m in range(attributes.shape[1]):
        if len(np.unique(targets[:, m])) == 1:
            p = 0.99 if targets[0, m] == 1 else 0.01
            log_p1[:, m] = math.log(p)
            continue
        clf = LogisticRegression(C=C, max_iter=2000).fit(train_x, targets[:, m])
        log_p1[:, m] = clf.predict_log_proba(test_x)[:, 1]
    p1 = np.clip(np.exp(log_p1), 1e-6, 1 - 1e-6)
    scores = np.log(p1) @ attributes.T + np.log1p(-p1) @ (1 - attributes).T  # (M, K)
    return scores.argmax(1)


@dataclass
class AttributeVAEConfig:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one image (C, H, W)
    num_attributes: int = 7          # length of the attribute code a
    latent_dim: int = 8              # size of z (the style: slant, thickness, position)
    hidden: int = 256                # MLP width
    num_levels: int = 17             # categorical likelihood over grey levels (digits: 0..16)
    additive: bool = True            # the code adds a learned picture per attribute to the
    #                                  decoder's logits, so unseen codes compose seen strokes

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)


class AttributeVAE(TrainableModel):
    """A VAE conditioned on an attribute code: ``q(z|x, a)``, ``p(x|z, a)``, categorical
    likelihood over grey levels. A batch holds ``x``, ``levels`` (optional) and ``a`` (B, A).

    With ``additive`` the decoder's logits are ``f(z, a) + sum_m a_m W_m``: every segment owns a
    learned picture of logits, so a code never seen in training (an unseen digit) still lights
    the strokes it names.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> vae = AttributeVAE(AttributeVAEConfig(hidden=32))
        >>> a = torch.tensor(SEVEN_SEGMENT[:3], dtype=torch.float32)
        >>> vae.sample(a, n=2).shape
        torch.Size([6, 1, 8, 8])
    """
    config_class = AttributeVAEConfig
    PHASES = ("vae",)

    def __init__(self, config: AttributeVAEConfig | None = None):
        super().__init__()
        self.config = c = config or AttributeVAEConfig()
        d = math.prod(c.data_shape)
        self.num_pixels = d
        self.encoder = nn.Sequential(nn.Linear(d + c.num_attributes, c.hidden), nn.LeakyReLU(),
                                     nn.Linear(c.hidden, c.hidden), nn.LeakyReLU(),
                                     nn.Linear(c.hidden, 2 * c.latent_dim))
        self.decoder = nn.Sequential(nn.Linear(c.latent_dim + c.num_attributes, c.hidden),
                                     nn.LeakyReLU(), nn.Linear(c.hidden, c.hidden),
                                     nn.LeakyReLU(), nn.Linear(c.hidden, d * c.num_levels))
        self.strokes = nn.Linear(c.num_attributes, d * c.num_levels, bias=False) \
            if c.additive else None

    def decode(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, L, D)`` of ``p(x|z, a)``."""
        out = self.decoder(torch.cat([z, a], 1))                              # (B, D * L)
        if self.strokes is not None:
            out = out + self.strokes(a)
        return out.view(len(z), self.num_pixels, self.config.num_levels).transpose(1, 2)

    def negative_elbo(self, batch: dict) -> torch.Tensor:
        """One-sample ``-ELBO`` per example, ``(B,)``, in nats."""
        c = self.config
        x, a = batch["x"], batch["a"].to(batch["x"].dtype)
        check_batch(x, c.data_shape, "the attribute VAE")
        if a.shape != (len(x), c.num_attributes):
            raise ValueError(f"a must be (B, {c.num_attributes}) for {len(x)} images, got "
                             f"{tuple(a.shape)}")
        levels = batch.get("levels")
        if levels is None:
            levels = to_levels(x, c.num_levels)
        mu, logvar = self.encoder(torch.cat([x.flatten(1), a], 1)).chunk(2, dim=1)
        z = reparameterize(mu, logvar)                                        # (B, latent)
        rec = -log_categorical(levels.reshape(len(x), -1), self.decode(z, a))
        return rec + gaussian_kl(mu, logvar)

    @torch.no_grad()
    def sample(self, codes: torch.Tensor, n: int, mean: bool = False) -> torch.Tensor:
        """``n`` images per code row, ``(len(codes) * n, C, H, W)`` in ``[0, 1]``: grey levels
        drawn from ``p(x|z, a)`` with ``z ~ N(0, I)``, or the decoder's mean level."""
        c = self.config
        with eval_mode(self):
            a = codes.float().repeat_interleave(n, 0)                             # (K * n, A)
            z = torch.randn(len(a), c.latent_dim, device=a.device)
            probs = self.decode(z, a).softmax(1)                                   # (K * n, L, D)
            if mean:
                grid = torch.arange(c.num_levels, device=a.device, dtype=probs.dtype)
                levels = torch.einsum("bld,l->bd", probs, grid)
            else:
                flat = probs.transpose(1, 2).reshape(-1, c.num_levels)
                levels = torch.multinomial(flat, 1).view(len(a), -1).float()
        return (levels / (c.num_levels - 1)).view(len(a), *c.data_shape)

    def phases(self, step: int) -> tuple[str, ...]:
        return ("vae",)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"vae": list(self.parameters())}

    def ema_module(self) -> nn.Module:
        return self

    def loss(self, phase: str, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        if phase != "vae":
            raise ValueError(f"unknown phase {phase!r}; the attribute VAE has one phase, 'vae'")
        value = self.negative_elbo(batch).mean()
        return value, {"neg_elbo": value.detach()}

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"neg_elbo": self.negative_elbo(batch)}

    def config_dict(self) -> dict:
        return asdict(self.config)
