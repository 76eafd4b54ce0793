"""Calls that need torch objects, made from plain data (exercises of Chapter 4).

A graded function such as one GAN training step takes modules and optimisers, which cannot
cross a process boundary as data. A driver builds them from plain arrays inside the student's
process, calls the student's function, and returns plain data (losses and the parameters after
the step), which the grader compares with what the same driver returned for the reference
solution. Every parameter starts with a stale gradient of 0.5, so a step that forgets to clear
gradients, or lets the discriminator's loss leak into the generator's gradient, ends with
different parameters; the GAN driver also counts the backward passes that reach the generator,
so a missing ``detach`` shows even when the gradients are cleared in time.
"""

from __future__ import annotations

__all__ = ["gan_step", "vae_step"]

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
