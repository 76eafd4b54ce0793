"""The VQ-VAE of Chapter 12: nearest-code assignment, the straight-through estimator, the EMA
codebook update, dead-code restarts, training through fit, reloading, and the GPT prior."""

import math

import pytest
import torch

from coursekit.models import GPT, GPTConfig
from coursekit.models.vqvae import (VQVAE, VQVAEConfig, code_perplexity, codebook_usage,
                                    dead_codes, ema_update, nearest_code, prior_rows,
                                    sample_codes, straight_through)
from coursekit.train import TrainConfig, fit, load_model

SMALL = dict(data_shape=(1, 8, 8), codebook_size=8, code_dim=4, hidden=8, downsample=1)


def test_nearest_code_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(300, 5, generator=gen), torch.randn(17, 5, generator=gen)
    brute = torch.tensor([min(range(17), key=lambda k: float(((row - codebook[k]) ** 2).sum()))
                          for row in z])
    assert torch.equal(nearest_code(z, codebook), brute)
    assert torch.equal(nearest_code(codebook, codebook), torch.arange(17))
    with pytest.raises(ValueError, match="same D"):
        nearest_code(z, codebook[:, :4])


def test_straight_through_passes_the_gradient_unchanged():
    gen = torch.Generator().manual_seed(1)
    z_e = torch.randn(6, 3, generator=gen, requires_grad=True)
    codebook = torch.randn(4, 3, generator=gen, requires_grad=True)
    z_q = codebook[nearest_code(z_e.detach(), codebook.detach())]
    out = straight_through(z_e, z_q)
    assert torch.allclose(out, z_q, atol=1e-6)     # forward: the codes (to rounding)
    weight = torch.randn(6, 3, generator=gen)
    (out * weight).sum().backward()
    assert torch.equal(z_e.grad, weight)           # backward: d loss / d z_q, to z_e
    assert codebook.grad is None or not codebook.grad.any()


def test_ema_update_against_a_hand_computation():
    count = torch.tensor([2.0, 1.0, 0.5])
    total = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z = torch.tensor([[1.0, 1.0], [3.0, -1.0], [0.0, 2.0]])
    index = torch.tensor([0, 0, 1])
    d, eps = 0.9, 1e-5
    new_count, new_total, codebook = ema_update(count, total, z, index, d, eps)
    # by hand: code 0 gets two vectors (sum (4, 0)), code 1 one ((0, 2)), code 2 none
    hand_count = torch.tensor([0.9 * 2 + 0.1 * 2, 0.9 * 1 + 0.1 * 1, 0.9 * 0.5])
    hand_total = torch.tensor([[0.9 * 2 + 0.1 * 4, 0.0], [0.0, 0.9 + 0.1 * 2],
                               [0.9, 0.9]])
    n = hand_count.sum()
    smoothed = (hand_count + eps) / (n + 3 * eps) * n
    assert torch.allclose(new_count, hand_count)
    assert torch.allclose(new_total, hand_total)
    assert torch.allclose(codebook, hand_total / smoothed[:, None])
    # without smoothing each code is the moving mean of its vectors
    assert torch.allclose(codebook[0], torch.tensor([2.2 / 2.0, 0.0]), atol=1e-4)


def test_restart_triggers_on_dead_codes_only():
    assert dead_codes(torch.tensor([0.5, 1.0, 3.0]), 1.0).tolist() == [True, False, False]
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**SMALL, restart_threshold=1.0))
    with torch.no_grad():
        model.ema_count.copy_(torch.tensor([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.2, 0.3]))
        model.ema_total.copy_(model.codebook * model.ema_count[:, None])   # e = m / N
    z_e = torch.randn(2, 4, 4, 4)                  # (B, D, h, w)
    index = torch.zeros(2, 4, 4, dtype=torch.long)  # every vector goes to code 0
    before = model.codebook.clone()
    model._update_codebook(z_e, index)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 4)
    # codes 6 and 7 fell below the threshold: each now sits on one of the batch's vectors
    for k in (6, 7):
        assert any(torch.allclose(model.codebook[k], row) for row in flat)
    assert int(model.restarts) == 2
    assert model.ema_count[6] == 1.0 and model.ema_count[7] == 1.0
    # codes 1-5 received nothing but stay above the threshold: decayed, not moved
    assert torch.allclose(model.codebook[1:6], before[1:6], atol=1e-3)
    # with the threshold at 0, nothing restarts
    off = VQVAE(VQVAEConfig(**SMALL, restart_threshold=0.0))
    off.ema_count.fill_(0.01)
    off._update_codebook(z_e, index)
    assert int(off.restarts) == 0


def test_usage_and_perplexity():
    assert code_perplexity(torch.arange(8), 8) == pytest.approx(8.0)
    assert code_perplexity(torch.tensor([0, 0, 1, 1]), 8) == pytest.approx(2.0)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert code_perplexity(torch.tensor([0, 0, 1, 2]), 4) == pytest.approx(
        math.exp(-(p * p.log()).sum()))
    assert codebook_usage(torch.tensor([[0, 1], [1, 1]]), 4) == 0.5


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="bottleneck"):
        VQVAEConfig(bottleneck="kmeans")
    with pytest.raises(ValueError, match="decay"):
        VQVAEConfig(decay=1.0)
    with pytest.raises(ValueError, match="halved"):
        VQVAEConfig(data_shape=(1, 3, 3), downsample=2)
    model = VQVAE(VQVAEConfig(**SMALL))
    with pytest.raises(ValueError, match="codes must lie"):
        model.decode_codes(torch.full((1, 4, 4), 8))
    with pytest.raises(ValueError, match="prior"):
        model.sample(2)


@pytest.mark.parametrize("kind", [dict(), dict(codebook_update="loss"),
                                  dict(bottleneck="scalar")])
def test_fit_trains_and_load_model_rebuilds(tmp_path, kind):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, 8, 8, generator=gen) > 0.6).float()
    model = VQVAE(VQVAEConfig(**SMALL, **kind))
    ckpt = tmp_path / "vq.pt"
    result = fit(model, {"x": x}, TrainConfig(epochs=4, batch_size=16, lr=3e-3, device="cpu",
                                              checkpoint=str(ckpt)))
    rec = result.history.losses["rec"]
    assert rec[-1] < rec[0]
    again, _, payload = load_model(ckpt)
    assert payload["model_class"] == "VQVAE"
    assert torch.equal(again.encode(x), model.encode(x))
    assert torch.allclose(again.reconstruct(x), model.reconstruct(x))


def test_same_seed_same_codebook():
    x = (torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    books = []
    for _ in range(2):
        torch.manual_seed(3)                       # the initial weights and codebook
        model = VQVAE(VQVAEConfig(**SMALL))
        fit(model, {"x": x}, TrainConfig(epochs=2, batch_size=16, device="cpu", seed=3))
        books.append(model.codebook.clone())
    assert torch.equal(*books)


def test_prior_rows_and_sampling():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**SMALL))
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 9])
    rows = prior_rows(model, x, y)
    assert rows.shape == (5, 17)
    assert rows[:, 0].tolist() == (y + 8).tolist()
    assert torch.equal(rows[:, 1:].view(5, 4, 4), model.encode(x))
    prior = GPT(GPTConfig(vocab_size=8 + 10, block_size=16, n_layer=1, n_head=2, n_embd=16))
    codes = sample_codes(prior, 6, 8, (4, 4), labels=torch.arange(6),
                         generator=torch.Generator().manual_seed(0))
    assert codes.shape == (6, 4, 4) and codes.max() < 8      # never a class token
    again = sample_codes(prior, 6, 8, (4, 4), labels=torch.arange(6),
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(codes, again)
    images = model.sample(6, labels=torch.arange(6), prior=prior,
                          generator=torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    with pytest.raises(ValueError, match="labels"):
        sample_codes(prior, 3, 8, (4, 4))


def test_cli_trains_and_samples_a_vqvae_with_its_prior(tmp_path, capsys):
    from coursekit.__main__ import main

    out = tmp_path / "vq"
    assert main(["train", "vqvae", "--data", "digits", "--epochs", "1", "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0
    assert {"checkpoint.pt", "prior.pt", "samples.png"} <= {p.name for p in out.iterdir()}
    png = tmp_path / "s.png"
    assert main(["sample", str(out), "--n", "10", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    prior, _, payload = load_model(out / "prior.pt")
    assert payload["model_class"] == "GPT" and prior.config.vocab_size == 64 + 10
    assert prior.config.block_size == 16                     # 8x8 digits: a 4x4 grid
