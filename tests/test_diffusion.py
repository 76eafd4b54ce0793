"""coursekit.models.diffusion: the closed-form marginal against the simulated chain, the schedules,
the KL terms against the reweighted noise loss, the discretised decoder, DDIM's determinism, the
samplers' shapes and range, guidance, resume equivalence through the engine, and bad input."""

import math

import pytest
import torch

from coursekit.data import digits
from coursekit.models import MODEL_CLASSES, Diffusion, DiffusionConfig
from coursekit.models.diffusion import discretized_gaussian_log_likelihood, make_betas
from coursekit.seed import seed_everything
from coursekit.train import TrainConfig, fit, load_checkpoint, load_model


def _model(**kw):
    seed_everything(0)
    kw.setdefault("hidden", 32)
    kw.setdefault("depth", 1)
    kw.setdefault("timesteps", 50)
    return Diffusion(DiffusionConfig(**kw))


@pytest.fixture(scope="module")
def val():
    return digits("val")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alpha_bar_is_monotone_and_inside_the_unit_interval(schedule):
    model = _model(schedule=schedule, timesteps=1000)
    ab = model.alpha_bar[1:]
    assert model.alpha_bar[0] == 1 and bool(((ab > 0) & (ab < 1)).all())
    assert bool((ab.diff() < 0).all())
    # buffers are float32 copies of float64 computations, and 1 - alpha_bar keeps its precision
    assert model.betas.dtype == torch.float32 and make_betas(schedule, 1000).dtype == torch.float64
    exact = 1 - torch.cumprod(1 - make_betas(schedule, 1000), 0)
    assert torch.allclose(model.one_minus_alpha_bar[1:].double(), exact, rtol=1e-6)
    assert "alpha_bar" in model.state_dict()


def test_closed_form_marginal_matches_simulating_the_chain():
    model = _model(schedule="linear", timesteps=200)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.linspace(-1, 1, 5).double()                                  # five "pixels"
    x = x0.repeat(40_000, 1)                                                # (S, 5)
    betas = model.betas.double()
    for t in range(1, 201):
        x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x.shape, generator=gen,
                                                                       dtype=torch.float64)
        if t in (10, 100, 200):
            mean = model.alpha_bar[t].double().sqrt() * x0
            var = model.one_minus_alpha_bar[t].double()
            assert torch.allclose(x.mean(0), mean, atol=0.02)
            assert torch.allclose(x.var(0), var.expand(5), rtol=0.05, atol=1e-4)


def test_q_sample_is_the_closed_form():
    model = _model()
    x0, noise = torch.rand(3, 1, 8, 8) * 2 - 1, torch.randn(3, 1, 8, 8)
    t = torch.tensor([1, 25, 50])
    out = model.q_sample(x0, t, noise)
    for i in range(3):
        ab = model.alpha_bar[t[i]]
        assert torch.allclose(out[i], ab.sqrt() * x0[i] + (1 - ab).sqrt() * noise[i], atol=1e-5)


def test_kl_term_is_the_reweighted_noise_prediction_loss():
    # Ho et al. (2020), eq. 12: with variance beta_tilde the KL is
    # beta_t^2 / (2 beta_tilde_t alpha_t (1 - alpha_bar_t)) ||eps - eps_hat||^2
    model = _model(objective="eps", snap=False, schedule="linear", timesteps=1000).eval()
    x0 = torch.rand(4, 1, 8, 8) - 0.5    # well inside (-1, 1), so clamping x0_hat is idle
    noise = torch.randn_like(x0)
    t = torch.tensor([2, 5, 10, 20])           # little noise: x0_hat stays inside (-1, 1)
    with torch.no_grad():
        kl = model.kl_term(x0, t, noise)
        eps_hat = model.net(model.q_sample(x0, t, noise), t.float() / 1000)
    beta, var = model.betas[t], model.posterior_variance[t]
    alpha, om = 1 - beta, model.one_minus_alpha_bar[t]
    weight = beta ** 2 / (2 * var * alpha * om)
    x0_hat = (model.q_sample(x0, t, noise) - om.sqrt().view(-1, 1, 1, 1) * eps_hat) \
        / model.alpha_bar[t].sqrt().view(-1, 1, 1, 1)
    assert bool((x0_hat.abs() < 1).all())
    expected = weight * (noise - eps_hat).pow(2).flatten(1).sum(1)
    assert torch.allclose(kl, expected, rtol=1e-3) and bool((kl > 0).all())


def test_q_posterior_is_the_gaussian_bayes_posterior():
    model = _model(timesteps=20)
    t = 7
    x0, x_t = torch.tensor([[0.3]]), torch.tensor([[-0.2]])
    mean, var = model.q_posterior(x0, x_t, torch.tensor([t]))
    # prior x_{t-1} ~ N(sqrt(ab_{t-1}) x0, 1 - ab_{t-1}), likelihood x_t ~ N(sqrt(a_t) x_{t-1}, b_t)
    ab_prev, beta = model.alpha_bar[t - 1].double(), model.betas[t].double()
    precision = 1 / (1 - ab_prev) + (1 - beta) / beta
    m = (ab_prev.sqrt() * 0.3 / (1 - ab_prev) + (1 - beta).sqrt() * -0.2 / beta) / precision
    assert math.isclose(float(var), float(1 / precision), rel_tol=1e-4)
    assert math.isclose(float(mean), float(m), rel_tol=1e-4, abs_tol=1e-6)


def test_discretised_decoder_sums_to_one_and_refuses_bad_levels():
    levels = torch.arange(17)
    for mean, std in ((0.0, 0.01), (0.97, 0.3), (-2.5, 0.05), (1.0, 1e-3)):
        logp = discretized_gaussian_log_likelihood(levels, torch.full((17,), mean), std, 17)
        assert torch.isfinite(logp).all() and math.isclose(float(logp.exp().sum()), 1.0,
                                                            abs_tol=1e-9)
    with pytest.raises(ValueError, match="levels must lie in 0..16"):
        discretized_gaussian_log_likelihood(torch.tensor([17]), torch.zeros(1), 0.1, 17)


def test_the_bound_is_finite_and_its_estimate_is_unbiased(val):
    model = _model(timesteps=20).eval()
    batch = {"x": val.images[:8], "levels": val.levels[:8]}
    with torch.no_grad():
        torch.manual_seed(0)
        full = model.nll_bound(batch, t_samples=None)
        torch.manual_seed(0)
        estimate = model.nll_bound(batch, t_samples=400)
    assert full.shape == (8,) and bool(torch.isfinite(full).all()) and bool((full > 0).all())
    assert abs(float(estimate.mean()) / float(full.mean()) - 1) < 0.1


def test_ddim_with_eta_zero_is_deterministic_ddpm_is_not():
    model = _model()
    x_T = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    a = model.sample(6, steps=10, method="ddim", x_T=x_T, generator=torch.Generator().manual_seed(2))
    b = model.sample(6, steps=10, method="ddim", x_T=x_T, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    c = model.sample(6, steps=10, method="ddpm", x_T=x_T, generator=torch.Generator().manual_seed(2))
    d = model.sample(6, steps=10, method="ddpm", x_T=x_T, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(c, d)


@pytest.mark.parametrize("objective,method", [("eps", "ddpm"), ("eps", "ddim"), ("v", "ddim"),
                                              ("flow", "flow")])
def test_samplers_give_images_of_the_data_shape_in_the_unit_interval(objective, method):
    model = _model(objective=objective, num_classes=10)
    x = model.sample(12, steps=7, method=method, guidance=2.0,
                     labels=torch.arange(12) % 10)
    assert x.shape == (12, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert model.sample(3, steps=1).shape == (3, 1, 8, 8)


def test_guidance_zero_is_the_conditional_model_and_mixes_linearly():
    model = _model(num_classes=10, snap=False).eval()
    x, t, y = torch.randn(5, 1, 8, 8), torch.full((5,), 20), torch.arange(5)
    cond = model._raw(x, t, y, 0.0)
    uncond = model.net(x, t.float() / 50, torch.full_like(y, 10))
    assert torch.allclose(model._raw(x, t, y, 0.0), model.net(x, t.float() / 50, y))
    assert torch.allclose(model._raw(x, t, y, 2.0), 3 * cond - 2 * uncond, atol=1e-5)


def test_a_short_run_lowers_the_loss_and_resume_equals_an_uninterrupted_run(val, tmp_path):
    ckpt = str(tmp_path / "run" / "checkpoint.pt")
    common = dict(device="cpu", ema_decay=0.9, seed=1, batch_size=64)
    straight = fit(_model(num_classes=10), val, TrainConfig(epochs=4, **common))
    losses = straight.history.losses["loss"]
    assert losses[-1] < losses[0]
    fit(_model(num_classes=10), val, TrainConfig(epochs=2, checkpoint=ckpt, **common))
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed = fit(_model(num_classes=10), val,
                  TrainConfig(epochs=4, checkpoint=ckpt, resume=True, **common))
    for a, b in ((straight.model, resumed.model), (straight.ema, resumed.ema)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert straight.history.losses == resumed.history.losses
    model, ema, payload = load_model(ckpt)
    assert type(model) is Diffusion and ema is not None and payload["model_class"] == "Diffusion"
    assert "Diffusion" in MODEL_CLASSES


def test_evaluate_reports_the_loss_and_the_bound(val):
    result = fit(_model(), val, TrainConfig(epochs=1, device="cpu"), val_data=val)
    assert {"val_loss", "val_nll_bound"} <= set(result.history.metrics)
    assert result.history.metrics["val_nll_bound"][0] > 0


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        DiffusionConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="unknown objective 'x1'"):
        DiffusionConfig(objective="x1")
    with pytest.raises(ValueError, match="label_dropout must lie in"):
        DiffusionConfig(label_dropout=1.0)
    model = _model()
    with pytest.raises(ValueError, match=r"expects a batch of shape \(B, 1, 8, 8\), got \(2, 64\)"):
        model.loss("diffusion", {"x": torch.rand(2, 64)}, 0)
    with pytest.raises(ValueError, match="unknown phase 'generator'"):
        model.loss("generator", {"x": torch.rand(2, 1, 8, 8)}, 0)
    with pytest.raises(ValueError, match="steps must lie in 1..50"):
        model.sample(2, steps=51)
    with pytest.raises(ValueError, match="does not fit a model trained with objective 'eps'"):
        model.sample(2, method="flow")
    with pytest.raises(ValueError, match="unknown method 'euler'"):
        model.sample(2, method="euler")
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        _model(num_classes=10).sample(2, labels=torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="nll_bound is for the diffusion objectives"):
        _model(objective="flow").nll_bound({"x": torch.rand(2, 1, 8, 8)})


@pytest.mark.parametrize("name", ["ddpm", "flow"])
def test_the_command_line_trains_and_samples_a_diffusion_model(name, tmp_path, capsys):
    from coursekit.__main__ import main

    out = tmp_path / name
    assert main(["train", name, "--epochs", "1", "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    assert f"{name} on digits: 1 epochs" in capsys.readouterr().out
    assert (out / "checkpoint.pt").exists() and (out / "samples.png").exists()
    assert main(["sample", str(out), "--n", "8", "--out", str(tmp_path / "s.png"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def test_a_conditional_model_samples_unconditionally_with_the_null_label():
    model = _model(num_classes=10)
    x_T = torch.randn(4, 1, 8, 8)
    a = model.sample(4, steps=5, x_T=x_T, unconditional=True)
    b = model.sample(4, steps=5, x_T=x_T, labels=torch.full((4,), 3))
    assert a.shape == b.shape and not torch.equal(a, b)
    null = _model(num_classes=10)
    assert torch.equal(a, null.sample(4, steps=5, x_T=x_T, unconditional=True, guidance=3.0))


def test_nn_distance_ratio_flags_copies_and_refuses_bad_input(val):
    from coursekit import copies

    train = val.images[:200]
    ratio = copies.nn_distance_ratio(torch.cat([train[:5], val.images[200:205]]), train)
    assert bool((ratio[:5] == 0).all()) and bool((ratio[5:] > 1 / 3).all())
    with pytest.raises(ValueError, match="at least two training examples"):
        copies.nn_distance_ratio(train[:1], train[:1])
    with pytest.raises(ValueError, match="different sizes per example"):
        copies.nn_distance_ratio(torch.rand(2, 10), train)


@pytest.mark.parametrize("objective", ["eps", "v", "flow"])
def test_min_snr_loss_is_the_x0_error_weighted_by_the_clipped_snr(objective):
    # Hang et al. (2023): whatever the target, the weighted loss is min(SNR, gamma) ||x0 - x0_hat||^2
    model = _model(objective=objective, min_snr_gamma=5.0, snap=False, clip_x0=False,
                   timesteps=1000).eval()
    x = torch.rand(6, 1, 8, 8)
    x0, noise = 2 * x - 1, torch.randn(6, 1, 8, 8)
    t = (torch.tensor([0.02, 0.1, 0.3, 0.5, 0.7, 0.95]) if objective == "flow"
         else torch.tensor([1, 20, 150, 400, 700, 990]))
    with torch.no_grad():
        loss = model.losses({"x": x}, t=t, noise=noise)
        x0_hat, _ = model.predict(model.q_sample(x0, t, noise), t)
    x0_error = (x0 - x0_hat).pow(2).flatten(1).mean(1)
    assert torch.allclose(loss, model.snr(t).clamp(max=5.0) * x0_error, rtol=1e-3, atol=1e-6)
    assert float(model.snr(t).max()) > 5 and float(model.snr(t).min()) < 5   # both regimes
    plain = _model(objective=objective, snap=False, clip_x0=False, timesteps=1000)
    assert torch.equal(plain.loss_weight(t), torch.ones(6))
    with pytest.raises(ValueError, match="min_snr_gamma must be positive"):
        DiffusionConfig(min_snr_gamma=0.0)


def test_the_snapping_decoder_is_a_distribution_and_the_endpoint_bound_is_unbiased(val):
    model = _model(timesteps=40).eval()
    x0 = 2 * val.images[:3] - 1
    t = torch.full((3,), 4)
    x_t = model.q_sample(x0, t, torch.randn_like(x0))
    alpha, sigma = model._scales(t, x0.ndim)
    with torch.no_grad():
        x0_net, _ = model.predict(x_t, t, snap=False)
        p = model.snap_logits(x_t, x0_net, alpha, sigma).softmax(dim=0)       # (L, B, ...)
    assert torch.allclose(p.sum(0), torch.ones_like(x0))
    batch = {"x": val.images[:8], "levels": val.levels[:8]}
    with torch.no_grad():
        torch.manual_seed(0)
        full = model.nll_bound(batch, t_samples=None, endpoint=5)
        torch.manual_seed(0)
        estimate = model.nll_bound(batch, t_samples=300, endpoint=5)
    assert bool(torch.isfinite(full).all()) and bool((full > 0).all())
    assert abs(float(estimate.mean()) / float(full.mean()) - 1) < 0.1
    with pytest.raises(ValueError, match="endpoint must lie in 1..39"):
        model.nll_bound(batch, endpoint=40)


def test_ddim_on_the_flow_grid_visits_the_flow_samplers_noise_levels():
    model = _model(timesteps=1000)
    steps = model.timesteps_for(10, grid="flow")
    assert steps[0] == 1000 and steps == sorted(steps, reverse=True) and len(steps) == 10
    snr = model.snr(torch.tensor(steps[1:]))
    flow_snr = torch.tensor([((1 - t) / t) ** 2 for t in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3,
                                                          0.2, 0.1)])
    assert torch.allclose(snr.log(), flow_snr.log(), atol=0.05)
    x = model.sample(4, steps=10, grid="flow", x_T=torch.randn(4, 1, 8, 8))
    assert x.shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown grid 'log'"):
        model.timesteps_for(10, grid="log")
