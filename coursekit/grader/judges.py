"""Training tasks judged in the grader's own process, on data that never enters the sandbox
(exercises part).

A "train it and reach a threshold" task cannot be judged by equality with the reference (two
correct trainings end at different weights), and it must not be judged by code that runs beside
the student's: that code can be replaced, and its verdict forged. So the sandbox returns only the
trained *artefact*, as plain data, and a judge here measures it:

* a table of numbers (a mixture's log-weights and log-probabilities), as the student's function
  returns it;
* or a network of a fixed family, ``Linear`` layers with ``tanh``/``relu``/``sigmoid`` between
  them, which :func:`coursekit.grader.drivers.network` turns into arrays inside the sandbox
  (``{"layers": [["linear", W, b], ["tanh"], ["linear", W, b]]}``) and :func:`forward` rebuilds
  here with numpy: no object of the student's crosses, only arrays, checked for shape and size.

How a chapter engineer declares a judged task (the API)::

    Task("vae_train", function="train_vae", points=3,
         driver="vae_networks",             # optional: in the sandbox, call and turn into arrays
         judge="vae_elbo",                  # a function of this module, run by the grader
         cases=[case(train, 0, public=True, held_out=dict(levels=val, limit=105.0)),
                case(train, 1, held_out=dict(levels=test, limit=101.0))])

A case's positional and keyword inputs go to the sandbox (to the driver, else to the student's
function); its ``held_out`` dict goes only to the judge, ``judge(artefact, **held_out)``, which
returns a :class:`Verdict`. The grader first judges the reference solution's own artefact and
stops (a broken exercise) unless it passes. A new judge is a function here that receives plain
arrays, validates them before computing (raise :class:`BadArtefact` with what is wrong) and
returns ``Verdict(passed, message)``; the message says what was measured (shown for public
cases only). Held-out inputs of public cases are written to the public checks, so that
:func:`coursekit.grader.check` judges in the notebook the same way.

Data the course ships (``coursekit.data``) can be read inside the sandbox too: a threshold on
such data checks that training works, it is not a secret. What the sandbox cannot do is change
how the artefact is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Verdict", "BadArtefact", "forward", "mixture_nll", "discriminator_distance",
           "vae_elbo", "generator_w1", "ar_nll", "codebook_distortion", "held_out_accuracy",
           "char_bits", "inpainting_psnr", "ddim_mmd", "JUDGES", "MAX_PARAMETERS"]

MAX_PARAMETERS = 4_000_000   # a network or table the grader agrees to evaluate
MAX_LAYERS = 16
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda h: np.maximum(h, 0.0),
               "sigmoid": lambda h: 0.5 * (1.0 + np.tanh(0.5 * h))}


class BadArtefact(ValueError):
    """An artefact that is not what the task asks for (with what is wrong)."""


@dataclass(frozen=True)
class Verdict:
    """A judge's result: whether the artefact reaches the task's bar, and what was measured."""

    passed: bool
    message: str
    malformed: bool = False    # the artefact is not of the asked form (not merely below the bar)


def _array(value, what: str, ndim: int) -> np.ndarray:
    if isinstance(value, (list, tuple)):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError, OverflowError):
            raise BadArtefact(f"{what} must be a numeric array") from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise BadArtefact(f"{what} must be a numeric array, got {type(value).__name__}")
    if value.ndim != ndim:
        raise BadArtefact(f"{what} must have {ndim} dimensions, got shape {value.shape}")
    if value.size > MAX_PARAMETERS:
        raise BadArtefact(f"{what} holds {value.size} numbers, more than {MAX_PARAMETERS}")
    value = value.astype(np.float64)
    if not np.isfinite(value).all():
        raise BadArtefact(f"{what} holds NaN or infinite values")
    return value


def _layers(network, what: str) -> list:
    """Validated ``[("linear", W, b) | (activation,)]`` of a network artefact."""
    if not isinstance(network, dict) or not isinstance(network.get("layers"), list):
        raise BadArtefact(f"{what} must be a network ({{'layers': [...]}}), got "
                          f"{type(network).__name__}")
    layers, total, width = [], 0, None
    for n, layer in enumerate(network["layers"]):
        if not isinstance(layer, (list, tuple)) or not layer or not isinstance(layer[0], str):
            raise BadArtefact(f"{what}: layer {n} is malformed")
        if layer[0] == "linear" and len(layer) == 3:
            W = _array(layer[1], f"{what}: layer {n}'s weight", 2)
            b = _array(layer[2], f"{what}: layer {n}'s bias", 1)
            if b.shape[0] != W.shape[0] or (width is not None and W.shape[1] != width):
                raise BadArtefact(f"{what}: layer {n} has weight {W.shape} and bias {b.shape} "
                                  f"after a layer of width {width}")
            total, width = total + W.size + b.size, W.shape[0]
            layers.append(("linear", W, b))
        elif layer[0] in ACTIVATIONS and len(layer) == 1:
            layers.append((layer[0],))
        else:
            raise BadArtefact(f"{what}: layer {n} is {str(layer[0])[:20]!r}; the grader rebuilds "
                              f"linear layers and {sorted(ACTIVATIONS)} only")
    linear = [layer for layer in layers if layer[0] == "linear"]
    if not linear or len(layers) > MAX_LAYERS or total > MAX_PARAMETERS:
        raise BadArtefact(f"{what} must have 1 to {MAX_LAYERS} layers and at most "
                          f"{MAX_PARAMETERS} parameters, got {len(layers)} and {total}")
    return layers


def forward(network, x: np.ndarray, what: str = "the network") -> np.ndarray:
    """Run a network artefact on ``x`` (``(B, in)``) with numpy in float64; ``(B, out)``.

    Example:
        >>> net = {"layers": [["linear", np.eye(2), np.zeros(2)], ["relu"]]}
        >>> forward(net, np.array([[1.0, -1.0]]))
        array([[1., 0.]])
    """
    layers = _layers(network, what)
    h = np.asarray(x, dtype=np.float64)
    if layers[0][0] == "linear" and layers[0][1].shape[1] != h.shape[1]:
        raise BadArtefact(f"{what} takes inputs of width {layers[0][1].shape[1]}, the task "
                          f"gives {h.shape[1]}")
    for layer in layers:
        h = h @ layer[1].T + layer[2] if layer[0] == "linear" else ACTIVATIONS[layer[0]](h)
    return h


def _logsumexp(a: np.ndarray, axis=None) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.exp(a - top).sum(axis=axis))


def _below(what: str, value: float, limit: float) -> Verdict:
    ok = bool(np.isfinite(value) and value < limit)
    return Verdict(ok, f"{what} = {value:.4g} (needs < {limit:g}): "
                       f"{'reached' if ok else 'NOT reached'}")


def mixture_nll(artefact, levels, num_components: int, limit: float) -> Verdict:
    """A mixture of per-pixel categoricals ``(log_weights (M,), log_probs (M, D, K))``, judged
    by its mean negative log-likelihood on the held-out ``levels`` ``(N, D)`` (Exercise 1).

    Example:
        >>> table = (np.log([0.5, 0.5]), np.log(np.full((2, 3, 4), 0.25)))
        >>> mixture_nll(table, np.zeros((5, 3), int), 2, 5.0).passed  # 3 log 4 = 4.16 nats
        True
    """
    if not isinstance(artefact, (list, tuple)) or len(artefact) != 2:
        raise BadArtefact("fit_mixture must return (log_weights, log_probs)")
    log_weights = _array(artefact[0], "log_weights", 1)
    log_probs = _array(artefact[1], "log_probs", 3)
    levels = np.asarray(levels, dtype=np.int64)
    M, D = int(num_components), levels.shape[1]
    K = int(levels.max()) + 1
    if log_weights.shape != (M,) or log_probs.shape[:2] != (M, D) or log_probs.shape[2] < K:
        raise BadArtefact(f"expected log_weights of shape ({M},) and log_probs of shape "
                          f"({M}, {D}, K >= {K}), got {log_weights.shape} and "
                          f"{log_probs.shape}")
    if not (np.isclose(_logsumexp(log_weights), 0.0, atol=1e-6)
            and np.allclose(_logsumexp(log_probs, axis=-1), 0.0, atol=1e-6)):
        return Verdict(False, "the weights or the tables do not sum to 1", malformed=True)
    joint = log_probs[:, np.arange(D), levels].sum(axis=-1).T + log_weights  # (N, M)
    return _below("held-out NLL (nats per image)", float(-_logsumexp(joint, axis=1).mean()),
                  float(limit))


def _normal_pdf(x, mean, std):
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))


def discriminator_distance(artefact, mean_data: float, std_data: float, mean_g: float,
                           std_g: float, limit: float) -> Verdict:
    """A discriminator network ``(B, 1) -> (B, 1)`` logits, judged by the mean of
    ``|sigmoid(l(x)) - D*(x)|`` on a grid where ``p_data + p_g > 0.05`` (Exercise 2)."""
    xs = np.linspace(-4.0, 4.0, 401)
    p_data, p_g = _normal_pdf(xs, mean_data, std_data), _normal_pdf(xs, mean_g, std_g)
    d_star = p_data / (p_data + p_g)
    logits = forward(artefact, xs[:, None], "the discriminator")
    if logits.shape != (len(xs), 1):
        raise BadArtefact(f"the discriminator must map (B, 1) to (B, 1), got {logits.shape}")
    learned = 0.5 * (1.0 + np.tanh(0.5 * logits[:, 0]))
    where = p_data + p_g > 0.05  # where there are samples to learn from
    return _below("mean |D - D*|", float(np.abs(learned - d_star)[where].mean()), float(limit))


def vae_elbo(artefact, levels, limit: float, samples: int = 10, seed: int = 0) -> Verdict:
    """A VAE ``{"encoder": network, "decoder": network}`` judged by its negative ELBO on the
    held-out ``levels`` ``(N, 64)`` (Exercise 3): the encoder maps ``levels / 16`` to ``mu``
    then ``logvar`` ``(N, 2J)``, the decoder ``(N, J)`` to ``(N, 64 * 17)`` logits; the KL is
    exact, the reconstruction averaged over ``samples`` draws of ``z``."""
    if not isinstance(artefact, dict) or set(artefact) != {"encoder", "decoder"}:
        raise BadArtefact("the VAE must come back as {'encoder': ..., 'decoder': ...}")
    levels = np.asarray(levels, dtype=np.int64)  # (N, D)
    N, D = levels.shape
    h = forward(artefact["encoder"], levels / 16.0, "the encoder")  # (N, 2J)
    if h.shape[1] % 2:
        raise BadArtefact(f"the encoder must return mu and logvar, (B, 2J), got {h.shape}")
    mu, logvar = np.split(h, 2, axis=1)  # (N, J) each
    logvar = np.clip(logvar, -30.0, 30.0)
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - 1.0 - logvar).sum(1)  # (N,)
    rng = np.random.default_rng(seed)
    reconstruction = np.zeros(N)
    for _ in range(int(samples)):
        z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)  # (N, J)
        logits = forward(artefact["decoder"], z, "the decoder")
        if logits.shape[1] % D:
            raise BadArtefact(f"the decoder must return (B, {D} * levels) logits, got "
                              f"{logits.shape}")
        logits = logits.reshape(N, D, -1)  # (N, D, 17)
        if logits.shape[2] <= levels.max():
            raise BadArtefact(f"the decoder gives {logits.shape[2]} levels per pixel")
        log_p = logits - _logsumexp(logits, axis=-1)[..., None]
        reconstruction -= np.take_along_axis(log_p, levels[..., None], -1)[..., 0].sum(1)
    value = float((reconstruction / int(samples) + kl).mean())
    return _below("held-out negative ELBO (nats per image)", value, float(limit))


def _two_modes(n: int, rng) -> np.ndarray:
    """``(n,)`` samples of ``N(-2, 0.3^2)`` and ``N(2, 0.3^2)`` with equal weights."""
    return np.where(rng.random(n) < 0.5, -2.0, 2.0) + 0.3 * rng.standard_normal(n)


def generator_w1(artefact, seed: int, limit: float, latent_dim: int = 4,
                 n: int = 4000) -> Verdict:
    """A generator network ``(B, latent_dim) -> (B, 1)`` judged by the Wasserstein-1 distance
    between ``n`` of its samples and ``n`` fresh samples of the two modes at -2 and 2
    (Exercise 4): about 2 for a generator on one mode, about 0.2 when it covers both."""
    rng = np.random.default_rng(int(seed) + 2000)
    samples = forward(artefact, rng.standard_normal((n, int(latent_dim))), "the generator")
    if samples.shape != (n, 1):
        raise BadArtefact(f"the generator must map (B, {latent_dim}) noise to (B, 1), got "
                          f"{samples.shape}")
    distance = np.abs(np.sort(samples[:, 0]) - np.sort(_two_modes(n, rng))).mean()
    return _below("Wasserstein-1 distance to the data", float(distance), float(limit))


def ar_nll(artefact, images, limit: float) -> Verdict:
    """A fully visible sigmoid belief network ``(W (D, D), c (D,))`` judged by its exact
    negative log-likelihood on the held-out binary ``images`` ``(N, D)`` (Exercise 11), with
    ``p(x_i = 1 | x_<i) = sigmoid(c_i + sum_{j < i} W_ij x_j)``.

    The judge applies the autoregressive mask itself: entries of ``W`` on or above the diagonal
    are ignored (a pixel that read itself or a later pixel would not give a normalised
    distribution), and the message says how many were nonzero.

    Example:
        >>> W, c = np.zeros((3, 3)), np.zeros(3)
        >>> ar_nll((W, c), np.eye(3), 2.1).message  # 3 log 2 = 2.079 nats
        'held-out NLL (nats per image) = 2.079 (needs < 2.1): reached'
        >>> peeks = (100 * np.eye(3), np.full(3, -50.0))  # x_i read itself: NLL 0 unmasked
        >>> verdict = ar_nll(peeks, np.eye(3), 2.1)  # masked: every logit is -50
        >>> verdict.passed, "3 nonzero entries of W" in verdict.message
        (False, True)
    """
    if not isinstance(artefact, (list, tuple)) or len(artefact) != 2:
        raise BadArtefact("the model must come back as (W, c)")
    images = np.asarray(images, dtype=np.float64)  # (N, D) of 0s and 1s
    D = images.shape[1]
    W = _array(artefact[0], "W", 2)
    c = _array(artefact[1], "c", 1)
    if W.shape != (D, D) or c.shape != (D,):
        raise BadArtefact(f"expected W of shape ({D}, {D}) and c of shape ({D},), got "
                          f"{W.shape} and {c.shape}")
    peeking = int(np.count_nonzero(np.triu(W)))
    logits = c + images @ np.tril(W, -1).T  # (N, D): pixel i reads pixels j < i only
    # -log Bernoulli(x | sigmoid(l)) = log(1 + e^l) - x l, stable for large |l|
    nll = (np.logaddexp(0.0, logits) - images * logits).sum(axis=1)  # (N,)
    verdict = _below("held-out NLL (nats per image)", float(nll.mean()), float(limit))
    if peeking:
        verdict = Verdict(verdict.passed, f"{verdict.message}; {peeking} nonzero entries of W "
                                          "on or above the diagonal were ignored (pixel i may "
                                          "read only pixels before it)")
    return verdict


def codebook_distortion(artefact, vectors, num_codes: int, limit: float,
                        min_usage: float) -> Verdict:
    """A codebook ``(K, D)`` judged on the held-out ``vectors`` ``(N, D)`` (Exercise 12): each
    vector is quantised to its nearest code; the mean squared distance to it must be below
    ``limit``, and the fraction of the ``K`` codes chosen at least once at least ``min_usage``.

    Example:
        >>> vectors = np.array([[0.0, 0.0], [1.0, 1.0], [0.9, 1.0]])
        >>> book = np.array([[0.0, 0.0], [1.0, 1.0]])
        >>> codebook_distortion(book, vectors, 2, 0.01, 1.0).passed  # (0.1^2) / 3
        True
        >>> codebook_distortion(np.array([[1.0, 1.0], [9.0, 9.0]]), vectors, 2, 1.0, 1.0).message
        'held-out distortion = 0.6700 (needs < 1), codes used = 1 of 2 (needs >= 2): NOT reached'
    """
    vectors = np.asarray(vectors, dtype=np.float64)  # (N, D)
    K, D = int(num_codes), vectors.shape[1]
    codebook = _array(artefact, "the codebook", 2)  # (K, D)
    if codebook.shape != (K, D):
        raise BadArtefact(f"expected a codebook of shape ({K}, {D}), got {codebook.shape}")
    distances = ((vectors ** 2).sum(1, keepdims=True) - 2.0 * vectors @ codebook.T
                 + (codebook ** 2).sum(1))  # (N, K) squared distances
    nearest = distances.argmin(axis=1)  # (N,)
    distortion = float(((vectors - codebook[nearest]) ** 2).sum(1).mean())
    used, needed = len(np.unique(nearest)), int(np.ceil(float(min_usage) * K - 1e-9))
    ok = bool(np.isfinite(distortion) and distortion < float(limit) and used >= needed)
    return Verdict(ok, f"held-out distortion = {distortion:.4f} (needs < {float(limit):g}), "
                       f"codes used = {used} of {K} (needs >= {needed}): "
                       f"{'reached' if ok else 'NOT reached'}")


def held_out_accuracy(artefact, images, labels, limit: float) -> Verdict:
    """A classifier network ``(B, D)`` images to ``(B, K)`` logits, judged by its accuracy on
    the held-out ``images`` ``(N, D)`` with ``labels`` ``(N,)`` in ``0 .. K-1`` (Exercise 6):
    the argmax of the logits must match the label on more than ``limit`` of the images.

    Example:
        >>> images, labels = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]]), np.array([0, 1, 1])
        >>> swap = {"layers": [["linear", np.eye(2), np.zeros(2)]]}  # logit k = pixel k
        >>> held_out_accuracy(swap, images, labels, 0.5).message
        'held-out accuracy = 0.6667 (needs > 0.5): reached'
    """
    images = np.asarray(images, dtype=np.float64)  # (N, D)
    labels = np.asarray(labels, dtype=np.int64)  # (N,)
    K = int(labels.max()) + 1
    logits = forward(artefact, images, "the classifier")  # (N, K)
    if logits.shape[1] < K:
        raise BadArtefact(f"the classifier must map (B, {images.shape[1]}) images to "
                          f"(B, {K}) logits, one per class, got {logits.shape}")
    if not np.isfinite(logits).all():
        raise BadArtefact("the classifier's logits hold NaN or infinite values")
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    ok = accuracy > float(limit)
    return Verdict(ok, f"held-out accuracy = {accuracy:.4f} (needs > {float(limit):g}): "
                       f"{'reached' if ok else 'NOT reached'}")


def char_bits(artefact, text: str, vocabulary: str, context: int, limit: float) -> Verdict:
    """A character model, a network from the one-hot codes of the ``context`` previous
    characters to logits over the next one, judged by its bits per character on the held-out
    ``text`` (Exercise 7).

    The judge encodes ``text`` itself: character ``vocabulary[i]`` has id ``i + 1`` and id 0 is
    any other character (:class:`coursekit.text.tokenize.CharTokenizer`'s ids for a tokenizer
    built on the training text). The input of position ``t`` is the concatenation of the
    ``V``-wide one-hot codes of ids ``t - context .. t - 1``, oldest first, ``(context * V,)``;
    each character from position ``context`` on is scored by the log-softmax of its logits, in
    bits.

    Example:
        >>> flat = {"layers": [["linear", np.zeros((3, 6)), np.zeros(3)]]}  # V = 3, context 2
        >>> char_bits(flat, "abba", "ab", 2, 1.6).message  # log2 3 = 1.585 bits
        'held-out bits per character = 1.585 (needs < 1.6): reached'
    """
    from coursekit.text.tokenize import CharTokenizer

    k = int(context)
    tokenizer = CharTokenizer(list(vocabulary))
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)  # (T,)
    V, T = tokenizer.vocab_size, len(ids)
    if k < 1 or T <= k:
        raise ValueError(f"need a context of at least 1 and a text longer than it, got "
                         f"context {k} and {T} characters")
    positions = np.arange(k, T)  # (N,) the characters scored
    previous = ids[positions[:, None] - k + np.arange(k)]  # (N, k), oldest first
    x = np.zeros((len(positions), k * V))  # (N, k V) one-hot codes side by side
    x[np.arange(len(positions))[:, None], np.arange(k) * V + previous] = 1.0
    logits = forward(artefact, x, "the character model")  # (N, V)
    if logits.shape[1] != V:
        raise BadArtefact(f"the character model must give {V} logits (one per id of the "
                          f"vocabulary, <unk> included), got {logits.shape[1]}")
    if not np.isfinite(logits).all():
        raise BadArtefact("the character model's logits hold NaN or infinite values")
    log_p = logits - _logsumexp(logits, axis=1)[:, None]  # (N, V) log-softmax, nats
    bits = float(-log_p[np.arange(len(positions)), ids[positions]].mean() / np.log(2.0))
    return _below("held-out bits per character", bits, float(limit))


def inpainting_psnr(artefact, images, mask, num_components: int, num_factors: int,
                    limit: float) -> Verdict:
    """A mixture of Gaussians with low-rank-plus-diagonal covariances (a mixture of
    probabilistic PCA), ``(log_weights (C,), means (C, D), factors (C, D, k), noise (C,) or
    (C, D))``, judged by how well it completes the held-out ``images`` ``(N, D)`` (Exercise 8).

    Component ``c`` is ``N(means[c], factors[c] factors[c]^T + diag(noise[c]))``. The judge
    hides the pixels where ``mask`` ``(D,)`` is True and fills them with the model's
    conditional mean ``E[x_m | x_o] = sum_c w_c(x_o) E_c[x_m | x_o]``, the weights being the
    components' posterior probabilities given the visible pixels (computed in log space); the
    mean over images of the PSNR on the hidden pixels (data range 1) must exceed ``limit``.

    Example:
        >>> images = np.array([[0.0, 0.0], [1.0, 1.0]])  # pixel 1 copies pixel 0
        >>> model = (np.log([0.5, 0.5]), images.copy(), np.zeros((2, 2, 1)), np.full(2, 0.01))
        >>> inpainting_psnr(model, images, np.array([False, True]), 2, 1, 30.0).message
        'held-out PSNR on the hidden pixels = 100.00 dB (needs > 30): reached'
    """
    if not isinstance(artefact, (list, tuple)) or len(artefact) != 4:
        raise BadArtefact("the mixture must come back as (log_weights, means, factors, noise)")
    images = np.asarray(images, dtype=np.float64)  # (N, D)
    mask = np.asarray(mask, dtype=bool)  # (D,) True = hidden
    C, k, D = int(num_components), int(num_factors), images.shape[1]
    log_weights = _array(artefact[0], "log_weights", 1)
    means = _array(artefact[1], "means", 2)
    factors = _array(artefact[2], "factors", 3)
    noise = artefact[3]
    noise = _array(noise, "noise", np.ndim(noise) if np.ndim(noise) in (1, 2) else 1)
    if (log_weights.shape != (C,) or means.shape != (C, D) or factors.shape != (C, D, k)
            or noise.shape not in ((C,), (C, D))):
        raise BadArtefact(f"expected log_weights ({C},), means ({C}, {D}), factors ({C}, {D}, "
                          f"{k}) and noise ({C},) or ({C}, {D}), got {log_weights.shape}, "
                          f"{means.shape}, {factors.shape} and {noise.shape}")
    if not np.isclose(_logsumexp(log_weights), 0.0, atol=1e-6):
        return Verdict(False, "the mixture weights do not sum to 1", malformed=True)
    if noise.min() <= 0.0:
        raise BadArtefact(f"the covariance must be positive definite: every noise variance must "
                          f"be > 0, got {noise.min():.3g}")
    noise = np.broadcast_to(noise.reshape(C, -1), (C, D))  # (C, D)
    hidden, seen = mask, ~mask
    x_o = images[:, seen]  # (N, O)
    log_joint = np.empty((len(images), C))  # (N, C) log w_c + log N(x_o; mean_c, cov_c)
    fills = np.empty((C, len(images), int(hidden.sum())))  # (C, N, M) E_c[x_m | x_o]
    for c in range(C):
        cov = factors[c] @ factors[c].T + np.diag(noise[c])  # (D, D)
        try:
            L = np.linalg.cholesky(cov[np.ix_(seen, seen)])  # (O, O)
        except np.linalg.LinAlgError:
            raise BadArtefact(f"component {c}'s covariance is not positive definite") from None
        a = np.linalg.solve(L, (x_o - means[c, seen]).T)  # (O, N) whitened residuals
        log_joint[:, c] = (log_weights[c] - 0.5 * (a ** 2).sum(0) - np.log(np.diag(L)).sum()
                           - 0.5 * seen.sum() * np.log(2 * np.pi))
        fills[c] = means[c, hidden] + np.linalg.solve(L.T, a).T @ cov[np.ix_(seen, hidden)]
    posterior = np.exp(log_joint - _logsumexp(log_joint, axis=1)[:, None])  # (N, C)
    x_m = np.einsum("nc,cnm->nm", posterior, fills)  # (N, M)
    if not np.isfinite(x_m).all():
        raise BadArtefact("the mixture's completions hold NaN or infinite values")
    mse = np.maximum(((x_m - images[:, hidden]) ** 2).mean(axis=1), 1e-10)  # (N,)
    value = float((10.0 * np.log10(1.0 / mse)).mean())
    ok = value > float(limit)
    return Verdict(ok, f"held-out PSNR on the hidden pixels = {value:.2f} dB (needs > "
                       f"{float(limit):g}): {'reached' if ok else 'NOT reached'}")


def _mmd(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """The squared maximum mean discrepancy of the samples ``x`` and ``y`` (``(n, D)`` each)
    under the Gaussian kernel ``exp(-|a - b|^2 / (2 h^2))``, the biased (V-statistic) form."""
    def kernel_mean(a, b):
        squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T  # (n, n)
        return float(np.exp(-np.maximum(squared, 0.0) / (2.0 * bandwidth ** 2)).mean())

    return kernel_mean(x, x) + kernel_mean(y, y) - 2.0 * kernel_mean(x, y)


def ddim_mmd(artefact, alpha_bar, means, std: float, seed: int, limit: float, n: int = 2000,
             steps: int = 50, bandwidth: float = 0.2, max_parameters: int = 70_000) -> Verdict:
    """A noise predictor ``eps(x_t, t)``, a network from ``(B, D + 1)`` inputs ``[x_t, t / T]``
    to ``(B, D)`` predicted noise, judged by the samples the grader draws with it (Exercise 9).

    The judge runs DDIM with ``eta = 0`` itself, on the task's schedule ``alpha_bar`` (``(T,)``,
    ``alpha_bar[t - 1]`` for step ``t``) over ``steps`` steps from ``t = T`` to 1 (the last one
    returns the estimate of ``x_0``), from ``n`` draws of ``N(0, I)``; it compares the samples
    with ``n`` fresh draws of the data's distribution, the equal-weight mixture of
    ``N(means[k], std^2 I)``, by the squared MMD under a Gaussian kernel of width ``bandwidth``,
    which must be below ``limit``. The MMD is a distance between distributions: a model on a
    few of the modes, one that smears them into a ring, and one that puts every sample on a
    mode's centre all stay above the bar. Networks over ``max_parameters`` are refused (the
    judge evaluates the network ``steps`` times).

    Example:
        >>> means, ab = np.array([[0.0, 0.0]]), np.array([0.9, 0.5, 0.1])
        >>> zero = {"layers": [["linear", np.zeros((2, 3)), np.zeros(2)]]}  # eps_hat = 0
        >>> # DDIM then returns x_T / sqrt(alpha_bar_T): exact for data N(0, 10 I), not N(0, I)
        >>> ddim_mmd(zero, ab, means, 10 ** 0.5, 0, 0.01, n=500, steps=3, bandwidth=1.0).passed
        True
        >>> ddim_mmd(zero, ab, means, 1.0, 0, 0.01, n=500, steps=3, bandwidth=1.0).message
        'MMD^2 of 500 DDIM samples to the data = 0.1989 (needs < 0.01): NOT reached'
    """
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)  # (T,)
    means = np.asarray(means, dtype=np.float64)  # (K, D)
    T, (K, D), n = len(alpha_bar), means.shape, int(n)
    total = sum(layer[1].size + layer[2].size for layer in _layers(artefact, "the denoiser")
                if layer[0] == "linear")
    if total > int(max_parameters):
        raise BadArtefact(f"the denoiser has {total} parameters, more than the task's "
                          f"{int(max_parameters)}")
    rng = np.random.default_rng(int(seed))
    x = rng.standard_normal((n, D))  # (n, D) x_T
    data = means[rng.integers(K, size=n)] + float(std) * rng.standard_normal((n, D))  # (n, D)
    ts = np.unique(np.round(np.linspace(T, 1, int(steps))).astype(np.int64))[::-1]
    for i, t in enumerate(ts):
        eps = forward(artefact, np.concatenate([x, np.full((n, 1), t / T)], axis=1),
                      "the denoiser")  # (n, D)
        if eps.shape != (n, D):
            raise BadArtefact(f"the denoiser must map (B, {D + 1}) inputs [x_t, t / T] to "
                              f"(B, {D}) noise, got {eps.shape}")
        if not np.isfinite(eps).all():
            raise BadArtefact("the denoiser's predicted noise holds NaN or infinite values")
        a_t = alpha_bar[t - 1]
        a_s = alpha_bar[ts[i + 1] - 1] if i + 1 < len(ts) else 1.0
        x0_hat = (x - np.sqrt(1.0 - a_t) * eps) / np.sqrt(a_t)  # (n, D)
        x = np.sqrt(a_s) * x0_hat + np.sqrt(1.0 - a_s) * eps
    if not np.isfinite(x).all():
        raise BadArtefact("the samples hold NaN or infinite values")
    return _below(f"MMD^2 of {n} DDIM samples to the data", _mmd(x, data, float(bandwidth)),
                  float(limit))


JUDGES = {f.__name__: f for f in (mixture_nll, discriminator_distance, vae_elbo, generator_w1,
                                  ar_nll, codebook_distortion, held_out_accuracy, char_bits,
                                  inpainting_psnr, ddim_mmd)}


def judge_artefact(name: str, artefact, held_out: dict) -> Verdict:
    """Call judge ``name`` on a decoded artefact; a malformed one is a failed verdict.

    Example:
        >>> judge_artefact("generator_w1", "not a network", {"seed": 0, "limit": 0.4}).message
        "the generator must be a network ({'layers': [...]}), got str"
    """
    if name not in JUDGES:
        raise KeyError(f"unknown judge {name!r}; judges are {sorted(JUDGES)}")
    try:
        with np.errstate(all="ignore"):
            return JUDGES[name](artefact, **held_out)
    except BadArtefact as error:
        return Verdict(False, str(error), malformed=True)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, MemoryError) as error:
        return Verdict(False, f"the artefact could not be evaluated ({type(error).__name__}: "
                              f"{str(error)[:200]})", malformed=True)
