"""Calls that need torch objects, made from plain data, and training tasks judged by a threshold.

A graded function such as one GAN training step takes modules and optimisers, which cannot
cross a process boundary as data. A driver builds them from plain arrays inside the student's
process, calls the student's function, and returns plain data (losses and the parameters after
the step), which the grader compares with what the same driver returned for the reference
solution. Every parameter starts with a stale gradient of 0.5, so a step that forgets to clear
gradients, or lets the discriminator's loss leak into the generator's gradient, ends with
different parameters; the GAN driver also counts the backward passes that reach the generator,
so a missing ``detach`` shows even when the gradients are cleared in time.

A "train it and reach a threshold" task cannot be judged by equality with the reference: two
correct trainings end at different weights. Its driver calls the student's training function,
measures the result on held-out data with the driver's own code, and returns plain verdicts
``{"<what> <op> <limit>": True/False}`` (printing the measured value); the reference solution
returns all ``True``, so :func:`coursekit.grader.tasks.compare` judges them as any other answer.
"""

from __future__ import annotations

__all__ = ["gan_step", "vae_step", "mixture_fit", "wgan_gp", "discriminator_fit",
           "vae_fit", "gan_fit"]

STALE_GRADIENT = 0.5


def _linear(weight, bias):
    import torch

    weight = torch.as_tensor(weight, dtype=torch.float32)
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


def _stale(*modules) -> None:
    import torch

    for module in modules:
        for p in module.parameters():
            p.grad = torch.full_like(p, STALE_GRADIENT)


def _params(module) -> list:
    return [p.detach().clone().numpy() for p in module.parameters()]


def gan_step(step, g_weight, g_bias, d_weight, d_bias, x, z, lr: float = 0.1) -> dict:
    """Call ``step(G, D, opt_G, opt_D, x, z) -> (d_loss, g_loss)`` on a small linear GAN.

    ``G`` is ``Linear`` then ``tanh`` (``(B, Z) -> (B, X)``), ``D`` is ``Linear`` giving one
    logit per row (``(B, X) -> (B, 1)``); both optimisers are plain SGD with learning rate ``lr``.
    """
    import torch

    G = torch.nn.Sequential(_linear(g_weight, g_bias), torch.nn.Tanh())
    D = _linear(d_weight, d_bias)
    opt_G = torch.optim.SGD(G.parameters(), lr=float(lr))
    opt_D = torch.optim.SGD(D.parameters(), lr=float(lr))
    _stale(G, D)
    # count the backward passes that reach G's output: a step that detaches the samples for
    # D's loss sends exactly one (from G's own loss)
    passes = []

    def watch(module, inputs, output):
        if output.requires_grad:
            output.register_hook(lambda grad: passes.append(1))

    G.register_forward_hook(watch)
    x = torch.as_tensor(x, dtype=torch.float32)
    z = torch.as_tensor(z, dtype=torch.float32)
    d_loss, g_loss = step(G, D, opt_G, opt_D, x, z)
    return {"d_loss": float(d_loss), "g_loss": float(g_loss), "G": _params(G), "D": _params(D),
            "backward_passes_into_G": len(passes)}


def vae_step(step, enc_weight, enc_bias, dec_weight, dec_bias, x, eps, lr: float = 0.1) -> dict:
    """Call ``step(encoder, decoder, opt, x, eps) -> loss`` on a small linear VAE.

    ``encoder`` is ``Linear`` ``(B, X) -> (B, 2 Z)`` whose two halves are ``mu`` and ``logvar``;
    ``decoder`` is ``Linear`` ``(B, Z) -> (B, X)`` giving Bernoulli logits; ``opt`` is SGD over
    both with learning rate ``lr``.
    """
    import torch

    encoder, decoder = _linear(enc_weight, enc_bias), _linear(dec_weight, dec_bias)
    opt = torch.optim.SGD([*encoder.parameters(), *decoder.parameters()], lr=float(lr))
    _stale(encoder, decoder)
    x = torch.as_tensor(x, dtype=torch.float32)
    eps = torch.as_tensor(eps, dtype=torch.float32)
    loss = step(encoder, decoder, opt, x, eps)
    return {"loss": float(loss), "encoder": _params(encoder), "decoder": _params(decoder)}


# ------------------------------------------------------------------- thresholds (training tasks)

def _below(what: str, value: float, limit: float) -> dict:
    """The verdict ``{"<what> < <limit>": value < limit}``, printing the measured value."""
    import math

    ok = bool(math.isfinite(value) and value < limit)
    print(f"{what} = {value:.4g} (needs < {limit:g}): {'reached' if ok else 'NOT reached'}")
    return {f"{what} < {limit:g}": ok}


def mixture_fit(fit, train, test, num_components: int, iterations: int, seed: int,
                limit: float) -> dict:
    """Call ``fit(train, num_components, iterations, seed) -> (log_weights, log_probs)`` and
    judge the fitted mixture of per-pixel categoricals by its NLL on ``test`` (Exercise 1).

    ``train`` and ``test`` are ``(N, D)`` integer levels; ``log_probs`` must be ``(M, D, K)``
    and normalised over ``K``, ``log_weights`` ``(M,)`` and normalised.
    """
    import numpy as np

    def logsumexp(a, axis=None):
        top = np.max(a, axis=axis, keepdims=True)
        return np.squeeze(top, axis=axis) + np.log(np.exp(a - top).sum(axis=axis))

    train, test = np.asarray(train), np.asarray(test)
    log_weights, log_probs = fit(train, int(num_components), int(iterations), int(seed))
    log_weights = np.asarray(log_weights, dtype=np.float64)
    log_probs = np.asarray(log_probs, dtype=np.float64)
    M, D = int(num_components), train.shape[1]
    if log_weights.shape != (M,) or log_probs.ndim != 3 or log_probs.shape[:2] != (M, D):
        raise ValueError(f"expected log_weights of shape ({M},) and log_probs of shape "
                         f"({M}, {D}, K), got {log_weights.shape} and {log_probs.shape}")
    normalised = bool(np.isclose(logsumexp(log_weights), 0.0, atol=1e-6)
                      and np.allclose(logsumexp(log_probs, axis=-1), 0.0, atol=1e-6))
    joint = log_probs[:, np.arange(D), test].sum(axis=-1).T + log_weights  # (N, M)
    nll = float(-logsumexp(joint, axis=1).mean())
    return {"weights and tables sum to 1": normalised,
            **_below("test NLL (nats per image)", nll, float(limit))}


def _mlp(weights):
    """``Linear -> tanh -> Linear`` from ``[w1, b1, w2, b2]`` (plain arrays)."""
    import torch

    w1, b1, w2, b2 = weights
    return torch.nn.Sequential(_linear(w1, b1), torch.nn.Tanh(), _linear(w2, b2))


def _differentiable(value, what: str):
    import torch

    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        raise TypeError(f"{what} must be a torch tensor that carries a gradient (no .item(), "
                        f".detach() or numpy), got {type(value).__name__}"
                        + (" without a gradient" if isinstance(value, torch.Tensor) else ""))
    return value


def wgan_gp(loss_fn, w1, b1, w2, b2, real, fake, eps, lam: float = 10.0) -> dict:
    """Call ``loss_fn(critic, real, fake, eps, lam)`` for a ``Linear -> tanh -> Linear`` critic
    (``(B, X) -> (B, 1)``), back-propagate the loss, and return it with the critic's gradients
    (Exercise 2): a penalty computed without ``create_graph=True`` gives the critic no gradient
    from the penalty, and a one-sided penalty a different one.
    """
    import torch

    critic = _mlp([w1, b1, w2, b2])
    real = torch.as_tensor(real, dtype=torch.float32)
    fake = torch.as_tensor(fake, dtype=torch.float32)
    eps = torch.as_tensor(eps, dtype=torch.float32)
    loss = _differentiable(loss_fn(critic, real, fake, eps, float(lam)), "the critic's loss")
    if loss.dim() != 0:
        raise ValueError(f"the critic's loss must be a scalar, got shape {tuple(loss.shape)}")
    loss.backward()
    return {"loss": float(loss.detach()), "grads": [p.grad.detach().clone().numpy()
                                           if p.grad is not None else 0 * p.detach().numpy()
                                           for p in critic.parameters()]}


def discriminator_fit(train, mean_data: float, std_data: float, mean_g: float, std_g: float,
                      n: int, seed: int, limit: float) -> dict:
    """Call ``train(real, fake, seed) -> D`` on ``n`` samples of two normal densities and judge
    the returned discriminator (``(B, 1)`` inputs to ``(B, 1)`` logits) by its mean distance to
    ``D* = p_data / (p_data + p_g)`` on a grid where the densities are not negligible
    (Exercise 2).
    """
    import numpy as np
    import torch

    def pdf(x, mean, std):
        return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))

    generator = torch.Generator().manual_seed(int(seed) + 1000)
    real = mean_data + std_data * torch.randn(int(n), 1, generator=generator)
    fake = mean_g + std_g * torch.randn(int(n), 1, generator=generator)
    D = train(real, fake, int(seed))
    xs = np.linspace(-4.0, 4.0, 401)
    p_data, p_g = pdf(xs, mean_data, std_data), pdf(xs, mean_g, std_g)
    d_star = p_data / (p_data + p_g)
    with torch.no_grad():
        logits = D(torch.tensor(xs, dtype=torch.float32).unsqueeze(1))
    learned = torch.sigmoid(torch.as_tensor(logits, dtype=torch.float32).reshape(-1)).numpy()
    where = p_data + p_g > 0.05  # where there are samples to learn from
    return _below("mean |D - D*|", float(np.abs(learned - d_star)[where].mean()), float(limit))


def vae_fit(train, train_levels, eval_levels, seed: int, limit: float, samples: int = 10) -> dict:
    """Call ``train(train_levels, seed) -> (encoder, decoder)`` and judge the VAE by its
    negative ELBO on ``eval_levels`` (Exercise 3).

    ``encoder`` maps ``(B, 64)`` grey values ``levels / 16`` to ``(B, 2 J)`` (``mu`` then
    ``logvar``); ``decoder`` maps ``(B, J)`` to ``(B, 64, 17)`` logits of a categorical
    distribution over the 17 levels of each pixel. The reconstruction term is averaged over
    ``samples`` draws of ``z`` (a fixed generator), the KL is exact.
    """
    import torch
    import torch.nn.functional as F

    train_levels = torch.as_tensor(train_levels, dtype=torch.int64)
    levels = torch.as_tensor(eval_levels, dtype=torch.int64)  # (N, 64)
    encoder, decoder = train(train_levels, int(seed))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mu, logvar = encoder(levels.float() / 16.0).chunk(2, dim=1)  # (N, J) each
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)  # (N,)
        reconstruction = torch.zeros(len(levels))
        for _ in range(samples):
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
            logits = decoder(z).reshape(len(levels), levels.shape[1], -1)  # (N, 64, 17)
            reconstruction += F.cross_entropy(logits.permute(0, 2, 1), levels,
                                              reduction="none").sum(1) / samples
    return _below("negative ELBO (nats per image)", float((reconstruction + kl).mean()),
                  float(limit))


def _two_modes(n: int, generator):
    """``(n, 1)`` samples of the mixture ``N(-2, 0.3^2)`` and ``N(2, 0.3^2)`` with equal weights."""
    import torch

    sign = torch.where(torch.rand(n, 1, generator=generator) < 0.5, -2.0, 2.0)
    return sign + 0.3 * torch.randn(n, 1, generator=generator)


def gan_fit(train, n: int, seed: int, limit: float, latent_dim: int = 4) -> dict:
    """Call ``train(data, seed) -> G`` on ``n`` samples of two modes at -2 and 2 and judge the
    generator (``(B, latent_dim)`` noise to ``(B, 1)``) by the Wasserstein-1 distance between
    4,000 of its samples and 4,000 fresh data samples (Exercise 4). Covering one mode only
    gives about 2; a generator that covers both, about 0.2.
    """
    import numpy as np
    import torch

    generator = torch.Generator().manual_seed(int(seed) + 2000)
    data = _two_modes(int(n), generator)
    G = train(data, int(seed))
    with torch.no_grad():
        samples = G(torch.randn(4000, int(latent_dim), generator=generator))
    samples = np.sort(torch.as_tensor(samples, dtype=torch.float32).reshape(-1).numpy())
    if samples.shape != (4000,):
        raise ValueError(f"G must map (B, {latent_dim}) noise to (B, 1) samples, got "
                         f"{samples.size} values for B = 4000")
    fresh = np.sort(_two_modes(4000, generator).reshape(-1).numpy())
    return _below("Wasserstein-1 distance to the data", float(np.abs(samples - fresh).mean()),
                  float(limit))
