"""Calls that need torch objects, made from plain data, and training tasks judged by a threshold.

A graded function such as one GAN training step takes modules and optimisers, which cannot
cross a process boundary as data. A driver builds them from plain arrays inside the student's
process, calls the student's function, and returns plain data (losses and the parameters after
the step), which the grader compares with what the same driver returned for the reference
solution. Every parameter starts with a stale gradient of 0.5, so a step that forgets to clear
gradients, or lets the discriminator's loss leak into the generator's gradient, ends with
different parameters; the GAN driver also counts the backward passes that reach the generator,
so a missing ``detach`` shows even when the gradients are cleared in time.

A "train it and reach a threshold" task returns its trained network as arrays
(:func:`network`): the drivers below call the student's training function and convert what it
returns, nothing more. Everything here runs beside the student's code and can be replaced by
it, so nothing here measures or decides: :mod:`coursekit.grader.judges` measures the arrays in
the grader's own process, on held-out data the sandbox never receives.
"""

from __future__ import annotations

__all__ = ["gan_step", "vae_step", "wgan_gp", "network", "discriminator_net", "vae_nets",
           "generator_net"]

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


# --------------------------------------------------------- trained networks, as plain arrays

_SKIPPED = ("Flatten", "Unflatten", "Identity", "Dropout")


def network(module, what: str = "the network") -> dict:
    """A ``torch.nn.Sequential`` of ``Linear`` layers and ``Tanh``/``ReLU``/``Sigmoid``
    activations (nested ``Sequential``, ``Flatten``, ``Unflatten`` and ``Dropout`` allowed) as
    ``{"layers": [["linear", W, b], ["tanh"], ...]}`` of numpy arrays, the form
    :func:`coursekit.grader.judges.forward` rebuilds.

    Raises:
        TypeError: not a ``Sequential``, or a layer the grader does not rebuild.
    """
    import torch

    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"{what} must be a torch.nn.Sequential of Linear layers and "
                        f"Tanh/ReLU/Sigmoid (the grader rebuilds it from its weights), got "
                        f"{type(module).__name__}")
    layers = []
    for layer in module.modules():
        kind = type(layer).__name__
        if isinstance(layer, torch.nn.Sequential) or kind in _SKIPPED:
            continue
        if type(layer) is torch.nn.Linear:
            weight = layer.weight.detach().double().numpy().copy()
            bias = (layer.bias.detach().double().numpy().copy() if layer.bias is not None
                    else 0.0 * weight[:, 0])
            layers.append(["linear", weight, bias])
        elif type(layer) in (torch.nn.Tanh, torch.nn.ReLU, torch.nn.Sigmoid):
            layers.append([kind.lower()])
        else:
            raise TypeError(f"{what} holds a {kind}; the grader rebuilds Linear, Tanh, ReLU "
                            "and Sigmoid layers only")
    return {"layers": layers}


def discriminator_net(train, mean_data: float, std_data: float, mean_g: float, std_g: float,
                      n: int, seed: int) -> dict:
    """Call ``train(real, fake, seed) -> D`` on ``n`` samples of two normal densities and
    return ``D`` (``(B, 1)`` inputs to ``(B, 1)`` logits) as arrays (Exercise 2)."""
    import torch

    generator = torch.Generator().manual_seed(int(seed) + 1000)
    real = mean_data + std_data * torch.randn(int(n), 1, generator=generator)  # (n, 1)
    fake = mean_g + std_g * torch.randn(int(n), 1, generator=generator)  # (n, 1)
    return network(train(real, fake, int(seed)), "the discriminator")


def vae_nets(train, train_levels, seed: int) -> dict:
    """Call ``train(train_levels, seed) -> (encoder, decoder)`` and return both as arrays
    (Exercise 3)."""
    import torch

    returned = train(torch.as_tensor(train_levels, dtype=torch.int64), int(seed))
    if not isinstance(returned, (tuple, list)) or len(returned) != 2:
        raise TypeError("train_vae must return (encoder, decoder)")
    return {"encoder": network(returned[0], "the encoder"),
            "decoder": network(returned[1], "the decoder")}


def _two_modes(n: int, generator):
    """``(n, 1)`` samples of the mixture ``N(-2, 0.3^2)`` and ``N(2, 0.3^2)`` with equal weights."""
    import torch

    sign = torch.where(torch.rand(n, 1, generator=generator) < 0.5, -2.0, 2.0)
    return sign + 0.3 * torch.randn(n, 1, generator=generator)


def generator_net(train, n: int, seed: int) -> dict:
    """Call ``train(data, seed) -> G`` on ``n`` samples of two modes at -2 and 2 and return the
    generator (``(B, 4)`` noise to ``(B, 1)``) as arrays (Exercise 4)."""
    import torch

    data = _two_modes(int(n), torch.Generator().manual_seed(int(seed) + 2000))  # (n, 1)
    return network(train(data, int(seed)), "the generator")
