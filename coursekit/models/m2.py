"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed and Welling (2014): the class is a
latent variable, observed for the few labelled images and inferred for the rest (Chapter 6).

The generative model is ``p(y) p(z) p(x|y,z)`` with ``p(y)`` uniform over ``K`` classes and
``p(z) = N(0, I)``; inference uses a classifier ``q(y|x)`` and an encoder ``q(z|x,y)``. For a
labelled pair the bound is the conditional VAE's, for an unlabelled image the class is summed out
under ``q(y|x)`` (Kingma et al. 2014, eqs. 6-7, written here as *negative* bounds, in nats):

    L(x, y) = E_q(z|x,y)[-log p(x|y,z)] + KL(q(z|x,y) || p(z)) - log p(y)
    U(x)    = sum_y q(y|x) L(x, y) - H(q(y|x))

so ``-U(x) = E_q(y|x)[-L(x, y)] + H(q(y|x))``, and ``-U(x) <= log sum_y exp(-L(x, y))`` with
equality when ``q(y|x)`` is the posterior the bounds imply. The training objective adds the
classifier's cross-entropy on the labelled images, weighted by ``alpha`` (eq. 9), because
otherwise ``q(y|x)`` learns only from the unlabelled term.

A batch is a dict with ``x`` (B, C, H, W) in [0, 1], ``levels`` (optional, for the categorical
likelihood), ``y`` (B,): the class, or ``-1`` where the image is unlabelled, and optionally
``prior`` (B, K): a per-image prior on ``y`` that replaces the uniform ``p(y)`` in both bounds (an
empirical-Bayes prior, e.g. label spreading's class probabilities; with it the unlabelled bound
holds ``KL(q(y|x) || prior)`` in place of the entropy bonus).

With ``generative=False`` there is no encoder or decoder: the model is the classifier alone,
trained on ``alpha`` times the labelled cross-entropy plus the consistency term. It is the
ablation that says what M2's generative part adds. Build such data
with ``coursekit.fewlabels.semi_supervised_data``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data.augment import augment_digits, random_shift
from coursekit.data.levels import from_levels
from coursekit.losses import gaussian_kl, log_normal, reparameterize
from coursekit.models.base import TrainableModel
from coursekit.models.layers import check_batch
from coursekit.models.likelihoods import likelihood
from coursekit.utils import eval_mode

__all__ = ["M2Config", "M2", "UNLABELLED"]

UNLABELLED = -1  # the value of ``y`` for an image without a label


@dataclass
class M2Config:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one image (C, H, W)
    num_classes: int = 10            # K, the number of classes y can take
    latent_dim: int = 16             # size of z
    hidden: int = 256                # width of every MLP (classifier, encoder, decoder)
    likelihood: str = "categorical"  # p(x|y,z): "categorical" over grey levels, "bernoulli", or
    #                                  "gaussian" (learned variance per feature: for M1 features)
    num_levels: int = 17             # grey levels of the categorical likelihood (digits: 0..16)
    alpha: float = 1.0               # weight of the classifier's cross-entropy on labelled images
    dropout: float = 0.0             # dropout in the classifier (a regulariser for few labels)
    input_dropout: float = 0.0       # dropout on the classifier's input pixels
    augment: bool = False            # random shifts of at most ``shift`` pixels while training
    shift: int = 1                   # largest shift of the augmentation, in pixels
    consistency: float = 0.0         # weight of KL(q(y|x) || q(y|x')), x' a random view of x
    classifier: str = "mlp"          # q(y|x): "mlp", or "conv" (two 3x3 conv layers, then MLP)
    channels: int = 32               # feature maps of the conv classifier's first layer
    generative: bool = True          # False: no encoder or decoder, the classifier alone with
    #                                  its cross-entropy and consistency (the ablation of M2)

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        if self.likelihood not in ("categorical", "bernoulli", "gaussian"):  # flat decoder
            raise ValueError(f"unknown likelihood {self.likelihood!r}; valid: ['categorical', "
                             f"'bernoulli', 'gaussian']")
        if (self.augment or self.consistency > 0 or self.classifier == "conv") \
                and len(self.data_shape) != 3:
            raise ValueError(f"augment, consistency and the conv classifier need images "
                             f"(C, H, W), got "
                             f"data_shape {self.data_shape}")
        if self.classifier not in ("mlp", "conv"):
            raise ValueError(f"unknown classifier {self.classifier!r}; valid: ['mlp', 'conv']")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.alpha < 0 or not 0 <= self.dropout < 1 or not 0 <= self.input_dropout < 1:
            raise ValueError(f"need alpha >= 0 and dropouts in [0, 1), got alpha={self.alpha}, "
                             f"dropout={self.dropout}, input_dropout={self.input_dropout}")

    @property
    def logits_per_pixel(self) -> int:
        return likelihood(self.likelihood, self.num_levels).outputs_per_pixel


def _mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.LeakyReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class M2(TrainableModel):
    """The M2 model: a classifier ``q(y|x)``, an encoder ``q(z|x,y)`` and a decoder ``p(x|y,z)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m2 = M2(M2Config(latent_dim=4, hidden=32))
        >>> levels = torch.randint(0, 17, (3, 1, 8, 8))
        >>> batch = {"x": levels / 16, "levels": levels, "y": torch.tensor([2, -1, -1])}
        >>> m2.classify(batch["x"]).shape, m2.unlabelled_bound(batch).shape
        (torch.Size([3, 10]), torch.Size([3]))
        >>> loss, logs = m2.loss("m2", batch, 0); loss.ndim
        0
    """
    config_class = M2Config
    PHASES = ("m2",)

    def __init__(self, config: M2Config | None = None):
        super().__init__()
        self.config = c = config or M2Config()
        d, k = math.prod(c.data_shape), c.num_classes
        self.num_pixels = d
        if c.classifier == "mlp":
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(c.input_dropout),
                                            _mlp([d, c.hidden, c.hidden, k], c.dropout))
        else:
            ch, (h, w) = c.channels, c.data_shape[1:]
            self.classifier = nn.Sequential(
                nn.Dropout(c.input_dropout),
                nn.Conv2d(c.data_shape[0], ch, 3, padding=1), nn.LeakyReLU(),   # (B, 32, H, W)
                nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.LeakyReLU(),            # (B, 64, H, W)
                nn.MaxPool2d(2), nn.Flatten(),                                  # (B, 64 H W / 4)
                _mlp([2 * ch * (h // 2) * (w // 2), c.hidden, k], c.dropout))
        if not c.generative:
            self.encoder = self.decoder = self.likelihood = self.logvar_x = None
            return
        self.encoder = _mlp([d + k, c.hidden, c.hidden, 2 * c.latent_dim])
        self.decoder = _mlp([c.latent_dim + k, c.hidden, c.hidden, d * c.logits_per_pixel])
        # p(x|y,z), an object; a Gaussian over M1 features is not bounded to [0, 1]
        self.likelihood = likelihood(c.likelihood, c.num_levels, bounded=False)
        # the Gaussian likelihood's noise, one learned log-variance per feature
        self.logvar_x = nn.Parameter(torch.zeros(d)) \
            if self.likelihood.learned_variance else None

    # ------------------------------------------------------------------------------ checks
    def check_data(self, data: dict) -> None:
        """Shapes, labels and grey levels, once before training (not at every step, which
        would make a GPU wait three times a step)."""
        self._check(data)
        if self.likelihood is not None:
            self.likelihood.check(data)

    def _check(self, batch: dict) -> None:
        check_batch(batch["x"], self.config.data_shape, "M2")
        y = batch.get("y")
        if y is not None:
            if y.shape != batch["x"].shape[:1]:
                raise ValueError(f"y must have one entry per image: x has {len(batch['x'])} "
                                 f"images, y has shape {tuple(y.shape)}")
            bad = (y < UNLABELLED) | (y >= self.config.num_classes)
            if bad.any():
                raise ValueError(f"labels must lie in 0..{self.config.num_classes - 1} (or "
                                 f"{UNLABELLED} for unlabelled), got {sorted(set(y[bad].tolist()))}")

    # --------------------------------------------------------------------------- the model
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of ``q(y|x)``, ``(B, K)``."""
        check_batch(x, self.config.data_shape, "M2")
        return self.classifier(x)

    def _levels(self, batch: dict) -> torch.Tensor:
        return self.likelihood.levels(batch["x"], batch.get("levels"))

    def labelled_bound(self, batch: dict, y: torch.Tensor,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
        """``L(x, y)``, the negative labelled bound in nats, ``(B,)``, with one sample of
        ``z = mu + sigma * eps`` (``eps`` ``(B, latent_dim)``; drawn when not given)."""
        self._require_generative("the labelled bound")
        c = self.config
        x = batch["x"]
        y_onehot = F.one_hot(y, c.num_classes).to(x.dtype)                   # (B, K)
        mu, logvar = self.encoder(torch.cat([x.flatten(1), y_onehot], 1)).chunk(2, dim=1)
        z = reparameterize(mu, logvar, eps)                                    # (B, latent)
        log_px = self._log_px(batch, y_onehot, z)
        prior = batch.get("prior")
        if prior is None:
            log_py = -math.log(c.num_classes)                                 # uniform p(y)
        else:                                                                 # per-image p(y)
            log_py = prior.clamp_min(1e-12).log().gather(1, y[:, None])[:, 0]
        return -log_px + gaussian_kl(mu, logvar) - log_py

    def _log_px(self, batch: dict, y_onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | y, z)`` in nats, ``(B,)``."""
        x = batch["x"]
        out = self._decoded(self.decoder(torch.cat([z, y_onehot], 1)))        # (B, [K,] D)
        levels = batch.get("levels")
        return self.likelihood.log_prob(
            x.flatten(1), out, levels=None if levels is None else levels.reshape(len(x), -1),
            logvar=self.logvar_x)

    @torch.no_grad()
    def log_marginal(self, batch: dict, samples: int = 64) -> torch.Tensor:
        """An importance-sampled estimate of ``log p(x)`` in nats, ``(B,)``: the class is summed
        out exactly and ``z`` is drawn ``samples`` times from ``q(z|x, y)`` for every class,
        ``log sum_y p(y) mean_s p(x|y,z_s) p(z_s) / q(z_s|x,y)`` (Burda et al. 2016's estimator
        per class). Its expectation is at most ``log p(x)`` and at least
        ``log sum_y exp(-L(x, y)) >= -U(x)`` (Jensen twice), and it tightens as ``samples``
        grows. Uniform ``p(y)``."""
        self._require_generative("log_marginal")
        c, x = self.config, batch["x"]
        b, k = x.shape[0], c.num_classes
        out = torch.empty(b, k, device=x.device)
        for y in range(k):
            y_onehot = F.one_hot(torch.full((b,), y, device=x.device), k).to(x.dtype)
            mu, logvar = self.encoder(torch.cat([x.flatten(1), y_onehot], 1)).chunk(2, dim=1)
            std = torch.exp(0.5 * logvar)
            logw = []
            for _ in range(samples):
                eps = torch.randn_like(mu)
                z = mu + std * eps
                log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
                log_qz = log_normal(z, mu, logvar)
                logw.append(self._log_px(batch, y_onehot, z) + log_pz - log_qz)
            out[:, y] = torch.logsumexp(torch.stack(logw), 0) - math.log(samples)
        return torch.logsumexp(out - math.log(k), dim=1)

    def _require_generative(self, what: str) -> None:
        if not self.config.generative:
            raise ValueError(f"{what} needs the generative model; this M2 was built with "
                             f"generative=False (a classifier alone)")

    def labelled_bounds_all(self, batch: dict, eps: torch.Tensor | None = None) -> torch.Tensor:
        """``L(x, y)`` for every class ``y``, ``(B, K)``, the same ``eps`` for every class."""
        k, b = self.config.num_classes, batch["x"].shape[0]
        rep = {name: t.repeat(k, *([1] * (t.ndim - 1))) for name, t in batch.items()
               if name in ("x", "levels", "prior")}                            # (K * B, ...)
        y = torch.arange(k, device=batch["x"].device).repeat_interleave(b)     # (K * B,)
        eps_k = None if eps is None else eps.repeat(k, 1)
        return self.labelled_bound(rep, y, eps_k).view(k, b).t()               # (B, K)

    def unlabelled_bound(self, batch: dict, eps: torch.Tensor | None = None,
                         logits: torch.Tensor | None = None) -> torch.Tensor:
        """``U(x) = sum_y q(y|x) L(x, y) - H(q(y|x))``, the negative unlabelled bound, ``(B,)``.

        ``logits`` of ``q(y|x)`` may be passed in (computed from ``x`` when not given)."""
        logits = self.classify(batch["x"]) if logits is None else logits      # (B, K)
        log_q = logits.log_softmax(dim=1)
        q = log_q.exp()
        entropy = -(q * log_q).sum(dim=1)                                      # (B,)
        return (q * self.labelled_bounds_all(batch, eps)).sum(dim=1) - entropy

    def _decoded(self, out: torch.Tensor) -> torch.Tensor:
        """The flat decoder's ``(B, D * K)`` -> ``(B, K, D)`` (``K > 1`` outputs per pixel)
        or ``(B, D)``: the layout ``self.likelihood`` reads."""
        k = self.config.logits_per_pixel
        if k == 1:
            return out
        return out.view(len(out), self.num_pixels, k).transpose(1, 2)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """The most probable class under ``q(y|x)``, ``(B,)``, in eval mode."""
        with eval_mode(self):
            return torch.cat([self.classify(x[i:i + batch_size]).argmax(1)
                              for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images in ``[0, 1]``, the decoder's mean at ``z ~ N(0, I)``, of the classes
        ``labels`` (n,) (default: cycling through the classes); ``generator`` seeds ``z``."""
        self._require_generative("sampling")
        c = self.config
        device = next(self.parameters()).device
        labels = (torch.arange(n, device=device) % c.num_classes if labels is None
                  else labels.to(device))
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        z = torch.randn(n, c.latent_dim, device=device, generator=generator)
        with eval_mode(self):
            out = self.decoder(torch.cat([z, F.one_hot(labels, c.num_classes).float()], 1))
        return self.likelihood.mean(self._decoded(out)).reshape(n, *c.data_shape)

    # --------------------------------------------------------------------- the engine's protocol
    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        """``mean_l L(x, y) + mean_u U(x) + alpha * mean_l CE(q(y|x), y)`` over the batch's
        labelled (l) and unlabelled (u) images (Kingma et al. 2014, eq. 9, per-example means)."""
        c = self.config
        if c.augment and self.training:
            levels = random_shift(self._levels(batch), c.shift)
            batch = {**batch, "levels": levels, "x": from_levels(levels, c.num_levels)}
        y = batch.get("y")
        if y is None:
            y = torch.full(batch["x"].shape[:1], UNLABELLED, device=batch["x"].device)
        lab, unl = y >= 0, y < 0
        logits = self.classify(batch["x"])                                     # (B, K)
        zero = logits.sum() * 0.0
        logs = {}
        loss = zero
        if lab.any():
            ce = F.cross_entropy(logits[lab], y[lab])
            loss = loss + c.alpha * ce
            logs.update(ce=ce.detach())
            if c.generative:
                part = {n: t[lab] for n, t in batch.items() if n in ("x", "levels")}
                bound_l = self.labelled_bound(part, y[lab]).mean()
                loss = loss + bound_l
                logs.update(labelled_bound=bound_l.detach())
        if unl.any() and c.generative:
            part = {n: t[unl] for n, t in batch.items() if n in ("x", "levels", "prior")}
            bound_u = self.unlabelled_bound(part, logits=logits[unl]).mean()
            loss = loss + bound_u
            logs.update(unlabelled_bound=bound_u.detach())
        if c.consistency > 0:
            # the prediction on a random view should match the (fixed) prediction on the image
            target = logits.detach().softmax(1)                               # (B, K)
            log_view = self.classify(augment_digits(batch["x"])).log_softmax(1)
            kl = (target * (target.clamp_min(1e-8).log() - log_view)).sum(1).mean()
            loss = loss + c.consistency * kl
            logs.update(consistency=kl.detach())
        return loss, logs

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example ``error`` of ``q(y|x)`` (needs labels) and the unlabelled bound ``U``."""
        self._check(batch)
        logits = self.classify(batch["x"])
        out = {}
        if self.config.generative:
            out["neg_elbo_unlabelled"] = self.unlabelled_bound(batch, logits=logits)
        if batch.get("y") is not None:
            out["error"] = (logits.argmax(1) != batch["y"]).float()
        return out
