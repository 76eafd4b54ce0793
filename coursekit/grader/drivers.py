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

A failing public case is reported in the student's terms: :func:`student_call` describes the
call the student's function received (modules, optimisers, tensors by shape and dtype), not the
driver's arguments, and :func:`answer_names` names the parts of a driver's answer after what the
student's code produced (``the gradient of critic[0].weight``, not ``answer['grads'][0]``).
"""

from __future__ import annotations

__all__ = ["gan_step", "vae_step", "wgan_gp", "network", "discriminator_net", "vae_nets",
           "generator_net", "classifier_net", "char_net", "denoiser_net", "student_call",
           "answer_names"]

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


def classifier_net(train, images, labels, seed: int) -> dict:
    """Call ``train(images, labels, seed) -> classifier`` on ``(N, D)`` float32 images with
    ``(N,)`` int64 labels, ``-1`` where the label is hidden, and return the classifier (``(B, D)``
    images to ``(B, K)`` logits) as arrays (Exercise 6)."""
    import torch

    images = torch.as_tensor(images, dtype=torch.float32)  # (N, D)
    labels = torch.as_tensor(labels, dtype=torch.int64)  # (N,)
    return network(train(images, labels, int(seed)), "the classifier")


def char_net(train, ids, vocab_size: int, context: int, seed: int) -> dict:
    """Call ``train(ids, vocab_size, context, seed) -> model`` on the ``(T,)`` int64 ids of a
    training text and return the model (``(B, context * vocab_size)`` one-hot codes of the
    previous characters to ``(B, vocab_size)`` logits) as arrays (Exercise 7)."""
    import torch

    ids = torch.as_tensor(ids, dtype=torch.int64)  # (T,)
    return network(train(ids, int(vocab_size), int(context), int(seed)), "the character model")


def denoiser_net(train, data, alpha_bar, seed: int) -> dict:
    """Call ``train(data, alpha_bar, seed) -> eps_net`` on ``(N, D)`` float32 training points
    and the ``(T,)`` float32 schedule, and return the noise predictor (``(B, D + 1)`` inputs
    ``[x_t, t / T]`` to ``(B, D)`` noise) as arrays (Exercise 9)."""
    import torch

    data = torch.as_tensor(data, dtype=torch.float32)  # (N, D)
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float32)  # (T,)
    return network(train(data, alpha_bar, int(seed)), "the denoiser")


# ------------------------------------------------------- feedback in the student's terms

def _shape(value) -> tuple:
    import numpy as np

    return tuple(np.shape(np.asarray(value)))


def _tensor(value, dtype: str = "float32") -> str:
    """A driver's array argument as the tensor the student's function receives."""
    import numpy as np

    from coursekit.grader.protocol import describe_value

    return describe_value(np.asarray(value, dtype=dtype), "tensor")


def _bound(driver: str, args, kwargs) -> dict:
    """The driver's arguments by name (the first, the student's function, left out)."""
    import inspect

    bound = inspect.signature(globals()[driver]).bind(None, *args, **kwargs)
    bound.apply_defaults()
    return dict(list(bound.arguments.items())[1:])


def student_call(driver: str, function: str, args, kwargs) -> str:
    """The call that ``driver`` makes of the student's ``function`` on a case's ``args`` and
    ``kwargs``: what a failing public case's feedback shows.

    Example:
        >>> import numpy as np
        >>> student_call("wgan_gp", "critic_loss", (), dict(
        ...     w1=np.zeros((4, 2)), b1=np.zeros(4), w2=np.zeros((1, 4)), b2=np.zeros(1),
        ...     real=np.zeros((13, 2)), fake=np.ones((13, 2)), eps=np.zeros((13, 1)), lam=10.0))
        'critic_loss(critic=Sequential(Linear(2, 4), Tanh(), Linear(4, 1)), real=tensor(shape=(13, 2), dtype=float32, values 0 to 0), fake=tensor(shape=(13, 2), dtype=float32, values 1 to 1), eps=tensor(shape=(13, 1), dtype=float32, values 0 to 0), lam=10.0)'
        >>> student_call("discriminator_net", "train_discriminator", (0.0, 1.0, 0.5, 1.5, 1000, 0),
        ...              {})
        'train_discriminator(real=(1000, 1) float32 tensor drawn from N(0, 1^2), fake=(1000, 1) float32 tensor drawn from N(0.5, 1.5^2), seed=0)'
    """
    import numpy as np

    from coursekit.grader.protocol import Shown, describe_call

    a = _bound(driver, args, kwargs)
    if driver == "gan_step":
        (x_dim, z_dim), lr = _shape(a["g_weight"]), float(a["lr"])
        shown = {"G": f"Sequential(Linear({z_dim}, {x_dim}), Tanh())",
                 "D": f"Linear({x_dim}, 1)", "opt_G": f"SGD(G.parameters(), lr={lr:g})",
                 "opt_D": f"SGD(D.parameters(), lr={lr:g})",
                 "x": _tensor(a["x"]), "z": _tensor(a["z"])}
    elif driver == "vae_step":
        (two_z, x_dim), lr = _shape(a["enc_weight"]), float(a["lr"])
        shown = {"encoder": f"Linear({x_dim}, {two_z})",
                 "decoder": f"Linear({two_z // 2}, {x_dim})",
                 "opt": f"SGD(encoder and decoder parameters, lr={lr:g})",
                 "x": _tensor(a["x"]), "eps": _tensor(a["eps"])}
    elif driver == "wgan_gp":
        hidden, x_dim = _shape(a["w1"])
        shown = {"critic": f"Sequential(Linear({x_dim}, {hidden}), Tanh(), Linear({hidden}, 1))",
                 "real": _tensor(a["real"]), "fake": _tensor(a["fake"]),
                 "eps": _tensor(a["eps"]), "lam": float(a["lam"])}
    elif driver == "discriminator_net":
        n = int(a["n"])
        shown = {"real": f"({n}, 1) float32 tensor drawn from "
                         f"N({a['mean_data']:g}, {a['std_data']:g}^2)",
                 "fake": f"({n}, 1) float32 tensor drawn from N({a['mean_g']:g}, {a['std_g']:g}^2)",
                 "seed": int(a["seed"])}
    elif driver == "vae_nets":
        shown = {"train_levels": _tensor(a["train_levels"], "int64"), "seed": int(a["seed"])}
    elif driver == "classifier_net":
        labels = np.asarray(a["labels"])
        shown = {"images": _tensor(a["images"]),
                 "labels": f"({len(labels)},) int64 tensor, {int((labels >= 0).sum())} "
                           f"labels and {int((labels < 0).sum())} hidden (-1)",
                 "seed": int(a["seed"])}
    elif driver == "char_net":
        shown = {"ids": _tensor(a["ids"], "int64"), "vocab_size": int(a["vocab_size"]),
                 "context": int(a["context"]), "seed": int(a["seed"])}
    elif driver == "denoiser_net":
        shown = {"data": _tensor(a["data"]), "alpha_bar": _tensor(a["alpha_bar"]),
                 "seed": int(a["seed"])}
    elif driver == "generator_net":
        shown = {"data": f"({int(a['n'])}, 1) float32 tensor, half near -2 and half near 2 "
                         "(standard deviation 0.3)", "seed": int(a["seed"])}
    else:
        raise ValueError(f"no description of the call driver {driver!r} makes")
    return describe_call(function, (), {k: v if isinstance(v, (int, float)) else Shown(v)
                                        for k, v in shown.items()}, limit=600)


def answer_names(driver: str | None, function: str) -> dict:
    """The parts of ``driver``'s answer (``"the answer['grads'][0]"``) named after what the
    student's ``function`` produced, for :func:`coursekit.grader.protocol.judge`; ``{}`` for a
    task without a driver or whose driver returns a network.

    Example:
        >>> answer_names("wgan_gp", "critic_loss")["the answer['grads'][2]"]
        'the gradient of critic[2].weight after loss.backward()'
    """
    def layer(prefix, owner, names):
        return {f"the answer[{prefix!r}][{i}]": f"{owner}{name} after the step"
                for i, name in enumerate(names)}

    if driver == "wgan_gp":
        return {"the answer['loss']": f"the loss {function} returned",
                "the answer['grads']": "the critic's gradients after loss.backward()",
                **{f"the answer['grads'][{i}]": f"the gradient of critic{name} after "
                                                 "loss.backward()"
                   for i, name in enumerate(("[0].weight", "[0].bias", "[2].weight",
                                             "[2].bias"))}}
    if driver == "gan_step":
        return {"the answer['d_loss']": f"d_loss, the first value {function} returned",
                "the answer['g_loss']": f"g_loss, the second value {function} returned",
                **layer("G", "G", ("[0].weight", "[0].bias")),
                **layer("D", "D", (".weight", ".bias")),
                "the answer['backward_passes_into_G']": "the number of backward passes that "
                "reached G's output (one expected: D's loss should see detached samples)"}
    if driver == "vae_step":
        return {"the answer['loss']": f"the loss {function} returned",
                **layer("encoder", "encoder", (".weight", ".bias")),
                **layer("decoder", "decoder", (".weight", ".bias"))}
    return {}
