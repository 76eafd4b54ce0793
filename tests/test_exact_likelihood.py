"""Chapter 11's models: the coupling flow (invertibility, log-determinant against autograd, the
dequantisation bound against quadrature) and the autoregressive model (exact normalisation by
enumeration, masking), trained by ``fit``, reloaded by ``load_model``, run from the CLI."""

import itertools
import json
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from coursekit.__main__ import main
from coursekit.data import digits
from coursekit.models import Autoregressive, AutoregressiveConfig, Flow, FlowConfig
from coursekit.models.autoregressive import MaskedConv2d
from coursekit.models.flow import AffineCoupling, squeeze, unsqueeze
from coursekit.train import TrainConfig, fit, load_model


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    """Give every parameter (the zero-initialised last layers too) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


FLOWS = [FlowConfig(data_shape=(4,), num_levels=0, dequantization="none", hidden=16),
         FlowConfig(data_shape=(1, 4, 4), num_levels=17, hidden=8, num_couplings=4),
         FlowConfig(data_shape=(2, 2, 4), num_levels=5, hidden=8, num_couplings=3,
                    dequantization="variational", dequant_couplings=2)]


@pytest.mark.parametrize("config", FLOWS, ids=["vector", "image", "image-2ch"])
def test_flow_is_invertible_to_float_tolerance(config):
    torch.manual_seed(0)
    flow = Flow(config).double()
    _randomise(flow)
    v = torch.randn(5, *config.data_shape, dtype=torch.float64)
    z, _ = flow.forward_flow(v)
    assert (z - v).abs().max() > 0.1  # the randomised flow is not the identity
    assert torch.allclose(flow.inverse_flow(z), v, atol=1e-10)
    assert torch.allclose(flow.forward_flow(flow.inverse_flow(v))[0], v, atol=1e-10)


@pytest.mark.parametrize("config", FLOWS, ids=["vector", "image", "image-2ch"])
def test_log_determinant_matches_autograd(config):
    torch.manual_seed(1)
    flow = Flow(config).double()
    _randomise(flow, seed=1)
    d = int(torch.tensor(config.data_shape).prod())
    v = torch.randn(1, *config.data_shape, dtype=torch.float64)
    J = jacobian(lambda t: flow.forward_flow(t.view(1, *config.data_shape))[0].flatten(),
                 v.flatten())                                              # (D, D)
    assert J.shape == (d, d)
    _, logdet = flow.forward_flow(v)
    assert abs(torch.linalg.slogdet(J).logabsdet - logdet[0]) < 1e-8


def test_dequantised_density_counts_the_preprocessing_jacobian():
    """log p(w) of the discrete-data flow = log N(z(w)) + log |det dz/dw| of the whole map."""
    config = FLOWS[1]
    flow = Flow(config).double()
    _randomise(flow, seed=2, scale=0.05)
    w = torch.rand(1, *config.data_shape, dtype=torch.float64) * config.num_levels

    def whole(t):
        return flow.forward_flow(flow._preprocess(t.view(1, *config.data_shape))[0])[0].flatten()

    J = jacobian(whole, w.flatten())
    z = whole(w.flatten())
    expected = -0.5 * (z.pow(2).sum() + z.numel() * math.log(2 * math.pi))
    expected = expected + torch.linalg.slogdet(J).logabsdet
    assert abs(flow.log_prob_dequantized(w)[0] - expected) < 1e-8


def test_a_new_flow_is_the_identity_and_log_scales_are_bounded():
    config = FlowConfig(data_shape=(1, 4, 4), num_levels=17, hidden=8, max_log_scale=1.5)
    flow = Flow(config)
    v = torch.randn(3, 1, 4, 4)
    z, logdet = flow.forward_flow(v)
    assert torch.equal(z, v) and torch.equal(logdet, torch.zeros(3))
    layer = flow.couplings[0]
    _randomise(layer, scale=50.0)
    s, _ = layer._scale_shift(v * layer.mask, None)
    assert s.abs().max() <= 1.5 and s.abs().max() > 1.4  # saturated, yet within the bound
    assert torch.equal(s * layer.mask, torch.zeros_like(s))  # fixed pixels keep log-scale 0


def test_masks_checkerboard_then_channel_and_squeeze_round_trip():
    flow = Flow(FlowConfig(data_shape=(1, 8, 8), num_couplings=4, hidden=4))
    kinds = [(layer.squeeze, tuple(layer.mask.shape)) for layer in flow.couplings]
    assert kinds == [(False, (1, 8, 8)), (False, (1, 8, 8)), (True, (4, 4, 4)), (True, (4, 4, 4))]
    # alternate layers transform complementary halves
    assert torch.equal(flow.couplings[0].mask + flow.couplings[1].mask, torch.ones(1, 8, 8))
    assert torch.equal(flow.couplings[2].mask + flow.couplings[3].mask, torch.ones(4, 4, 4))
    x = torch.randn(2, 3, 8, 6)
    assert torch.equal(unsqueeze(squeeze(x)), x)
    assert torch.equal(squeeze(torch.arange(4.).view(1, 1, 2, 2)).flatten(), torch.arange(4.))


def test_coupling_inverse_needs_only_the_fixed_half():
    layer = AffineCoupling(torch.tensor([0.0, 1.0, 0.0, 1.0]), hidden=8)
    _randomise(layer)
    v = torch.randn(4, 4)
    y, _ = layer(v)
    assert torch.equal(y[:, 1::2], v[:, 1::2])       # the masked (fixed) half passes unchanged
    assert torch.allclose(layer.inverse(y), v, atol=1e-6)


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_dequantisation_bound_holds_against_quadrature(dequantization):
    """On 2 pixels of 3 levels, P(levels) = the integral of p(w) over the bin, by a fine midpoint
    rule: the bins' probabilities sum to 1 and the mean bound never exceeds -log P."""
    torch.manual_seed(3)
    config = FlowConfig(data_shape=(2,), num_levels=3, hidden=16, num_couplings=4,
                        dequantization=dequantization, dequant_couplings=2, alpha=0.0)
    flow = Flow(config).double()
    _randomise(flow, seed=3, scale=0.3)
    m = 100                                                     # midpoints per bin side
    u = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    grid = torch.cartesian_prod(u, u)                           # (m^2, 2) in the unit square
    probs = {}
    with torch.no_grad():
        for levels in itertools.product(range(3), repeat=2):
            w = grid + torch.tensor(levels, dtype=torch.float64)
            probs[levels] = flow.log_prob_dequantized(w).exp().mean().item()
        assert abs(sum(probs.values()) - 1) < 2e-3
        levels = torch.tensor(list(probs), dtype=torch.long)                # (9, 2)
        g = torch.Generator().manual_seed(0)
        draws = flow.nll_bound({"levels": levels.repeat(2000, 1)}, generator=g)
        bound = draws.view(2000, 9).mean(0)                                 # (9,)
        config.alpha = 0.05  # a wider logit domain: mass outside [0, L)^2 is lost
        inside = sum(flow.log_prob_dequantized(grid + torch.tensor(levels, dtype=torch.float64))
                     .exp().mean().item() for levels in itertools.product(range(3), repeat=2))
    assert inside < 0.999
    exact = -torch.tensor(list(probs.values())).log()
    assert (bound >= exact - 0.01).all()
    if dequantization == "uniform":
        # the gap is KL(uniform || p(u | levels)): positive where the density varies in a bin
        assert (bound - exact).max() > 0.01


def test_variational_dequantiser_density_is_normalised():
    """q(u | levels) integrates to 1 over the unit square (midpoint rule via the change of
    variables back to eps)."""
    torch.manual_seed(4)
    config = FlowConfig(data_shape=(2,), num_levels=3, hidden=16, num_couplings=2,
                        dequantization="variational", dequant_couplings=2)
    flow = Flow(config).double()
    _randomise(flow, seed=4, scale=0.2)
    g = torch.Generator().manual_seed(1)
    levels = torch.tensor([[2, 0]]).expand(20000, 2)
    with torch.no_grad():
        u, log_q = flow.dequantize(levels, generator=g)
    assert ((u > 0) & (u < 1)).all()
    # E_q[1 / q(u)] = area of the support = 1 (importance sampling of the uniform density)
    assert abs((-log_q).exp().mean().item() - 1) < 0.05


AR_CONFIGS = [dict(arch="causal_conv", channels=8, kernel_size=3),
              dict(arch="made", hidden=16)]


def _random_autoregressive(shape, levels: int, kw: dict, seed: int) -> Autoregressive:
    """An autoregressive model of ``shape`` with randomised weights (seeded), no dropout."""
    torch.manual_seed(seed)
    model = Autoregressive(AutoregressiveConfig(data_shape=shape, num_levels=levels,
                                                dropout=0.0, **kw))
    _randomise(model, seed=seed, scale=1.0)
    return model


@pytest.mark.parametrize("kw", AR_CONFIGS, ids=["causal_conv", "made"])
def test_autoregressive_model_is_normalised_on_2x2_binary_images(kw):
    model = _random_autoregressive((1, 2, 2), 2, kw, seed=5).double()
    images = torch.tensor(list(itertools.product([0, 1], repeat=4))).view(16, 1, 2, 2)
    p = model.log_prob({"levels": images}).exp()
    assert abs(p.sum().item() - 1) < 1e-12
    assert p.max() / p.min() > 1.5  # the randomised model is not uniform


@pytest.mark.parametrize("kw", AR_CONFIGS, ids=["causal_conv", "made"])
def test_output_i_is_independent_of_inputs_from_i_on(kw):
    model = _random_autoregressive((1, 4, 4), 5, kw, seed=6).eval()
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 5, (1, 1, 4, 4), generator=g)
    logits = model.logits(base).flatten(2)                     # (1, L, D)
    for i in range(16):
        changed = base.clone().view(1, 16)
        changed[0, i:] = (changed[0, i:] + 1 + torch.randint(0, 4, (16 - i,), generator=g)) % 5
        after = model.logits(changed.view(1, 1, 4, 4)).flatten(2)
        assert torch.equal(after[:, :, :i + 1], logits[:, :, :i + 1]), i
        if i > 0:  # and it does depend on the pixels before it
            earlier = base.clone().view(1, 16)
            earlier[0, i - 1] = (earlier[0, i - 1] + 2) % 5
            moved = model.logits(earlier.view(1, 1, 4, 4)).flatten(2)[:, :, i]
            assert not torch.equal(moved, logits[:, :, i]), i


def test_stacked_masked_convolutions_have_a_blind_spot():
    torch.manual_seed(7)
    net = torch.nn.Sequential(MaskedConv2d(1, 4, 3, "A"), MaskedConv2d(4, 4, 3, "B"),
                              MaskedConv2d(4, 4, 3, "B"), MaskedConv2d(4, 1, 3, "B"))
    x = torch.randn(1, 1, 7, 7, requires_grad=True)
    net(x)[0, 0, 4, 3].backward()
    seen = x.grad[0, 0] != 0
    assert not seen[4, 3:].any() and not seen[5:].any()      # never the pixel or later ones
    assert seen[3, 2] and seen[3, 4]                         # sees above-left and above-right
    assert not seen[2, 6]                                    # the blind spot, though it is earlier


def test_sampling_is_seeded_and_follows_the_model():
    model = Autoregressive(AutoregressiveConfig(data_shape=(1, 2, 2), num_levels=3,
                                                arch="made", hidden=8, dropout=0.0))
    with torch.no_grad():  # pixel 0 always 2; each later pixel copies the one before
        for p in model.parameters():
            p.zero_()
        model.net.out.bias.view(4, 3)[0] = torch.tensor([-50.0, -50.0, 50.0])
        direct = model.net.direct.weight.view(4, 3, 4, 3)
        for i in range(1, 4):
            direct[i, :, i - 1, :] = 50 * torch.eye(3)
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.ones(5, 1, 2, 2))
    flow = Flow(FlowConfig(data_shape=(1, 4, 4), hidden=4))
    a, b = (flow.sample(3, generator=torch.Generator().manual_seed(9)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == (3, 1, 4, 4) and set(a.unique().tolist()) <= {
        k / 16 for k in range(17)}


def test_fit_trains_and_load_model_reloads(tmp_path):
    train, val = digits("val"), digits("test")
    for model in (Flow(FlowConfig(hidden=8, num_couplings=2, dequantization="variational",
                                  dequant_couplings=1)),
                  Autoregressive(AutoregressiveConfig(channels=8))):
        ckpt = tmp_path / f"{type(model).__name__}.pt"
        result = fit(model, train, TrainConfig(epochs=2, device="cpu", seed=0,
                                               checkpoint=str(ckpt)), val_data=val)
        nats = result.history.metrics["val_nats"]
        assert nats[1] < nats[0]
        loaded, _, _ = load_model(ckpt)
        assert type(loaded) is type(model)
        model.eval()
        batch = {"levels": val.levels[:20]}
        g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        if isinstance(model, Flow):
            assert torch.equal(loaded.nll_bound(batch, g1), model.nll_bound(batch, g2))
        else:
            assert torch.equal(loaded.log_prob(batch), model.log_prob(batch))


@pytest.mark.parametrize("make, message", [
    (lambda: FlowConfig(dequantization="gaussian"), "unknown dequantization 'gaussian'"),
    (lambda: FlowConfig(data_shape=(1, 7, 8)), "H and W must be even"),
    (lambda: FlowConfig(num_levels=0), "dequantization 'none' is for continuous data"),
    (lambda: AutoregressiveConfig(arch="pixelrnn"), "unknown arch 'pixelrnn'"),
    (lambda: AutoregressiveConfig(num_levels=1), "num_levels must be >= 2"),
    (lambda: Flow(FlowConfig(hidden=4)).nll_bound({"levels": torch.zeros(2, 64).long()}),
     r"expects a batch of shape \(B, 1, 8, 8\), got \(2, 64\)"),
    (lambda: Autoregressive().check_data({"levels": torch.full((2, 1, 8, 8), 17)}),
     r"levels must lie in 0..16, got values from 17 to 17"),
    (lambda: Flow(FlowConfig(hidden=4)).sample(2, labels=torch.zeros(2)), "unconditional"),
])
def test_bad_input_is_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("name", ["realnvp", "autoregressive"])
def test_cli_trains_and_samples(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["train", name, "--epochs", "1", "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "val_nats" in metrics["history"]["metrics"]
    png = tmp_path / "s.png"
    assert main(["sample", str(out), "--n", "8", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exercise_public_cases_catch_the_named_mistakes():
    """Exercise 11's public cases fail a log-determinant without its sum, a MADE output mask
    off by one degree, a naive exp of log-ratios, and sampling every pixel at once."""
    from coursekit.grader import check

    def coupling_without_sum(x, mask, W_s, c_s, W_t, c_t):
        s = torch.tanh((x * mask) @ W_s + c_s) * (1 - mask)
        t = ((x * mask) @ W_t + c_t) * (1 - mask)
        return x * mask + (1 - mask) * (x * torch.exp(s) + t), s

    def made_off_by_one(in_degrees, out_degrees, output_layer):
        return (out_degrees[:, None] >= in_degrees[None, :]).float()

    def bounds_with_naive_exp(log_p, log_q):
        r = log_p - log_q
        return r.mean(0), torch.log(torch.exp(r).mean(0))

    def sample_all_at_once(W, c, u):
        return (u < torch.sigmoid(c + torch.zeros_like(u) @ W.T)).float()

    for task, wrong in [("el_coupling_forward", coupling_without_sum),
                        ("el_made_mask", made_off_by_one),
                        ("el_dequant_bounds", bounds_with_naive_exp),
                        ("el_ar_sample", sample_all_at_once)]:
        assert check(task, wrong) is False, task
