"""coursekit.models: shapes for every model and image size, gradients reach every parameter,
MADE's autoregressive property, IWAE against the ELBO, and clear errors for bad inputs."""

import math

import pytest
import torch

from coursekit.metrics import iwae_nll
from coursekit.models import GAN, VAE, GANConfig, VAEConfig, layers

SHAPES = [(1, 8, 8), (1, 28, 28), (1, 25, 25), (3, 20, 24)]


def _batch(shape, n=4, levels=17):
    g = torch.Generator().manual_seed(0)
    lv = torch.randint(0, levels, (n, *shape), generator=g)
    return {"x": lv.float() / (levels - 1), "levels": lv, "y": torch.arange(n) % 10}


def _grads_reach(model, params):
    missing = [name for name, p in model.named_parameters()
               if any(p is q for q in params) and (p.grad is None or not p.grad.abs().sum() > 0)]
    return missing


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("conditional", [False, True])
def test_gan_shapes_and_gradients(shape, arch, conditional):
    torch.manual_seed(0)
    model = GAN(GANConfig(data_shape=shape, arch=arch, num_classes=10 if conditional else 0,
                          channels=8, hidden=32, spectral_norm=conditional))
    batch = _batch(shape)
    assert model.sample(3).shape == (3, *shape)
    assert model.discriminator(batch["x"], batch["y"]).shape == (4,)
    for phase, part in (("discriminator", model.discriminator), ("generator", model.generator)):
        model.zero_grad()
        loss, logs = model.loss(phase, batch, 0)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert _grads_reach(model, list(part.parameters())) == []


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wgan", "hinge"])
def test_every_gan_loss_trains_a_step(loss):
    torch.manual_seed(0)
    model = GAN(GANConfig(hidden=16, loss=loss, gradient_penalty=10.0 if loss == "wgan" else 0))
    value, logs = model.loss("discriminator", _batch((1, 8, 8)), 0)
    value.backward()
    assert torch.isfinite(value) and ("gp" in logs) == (loss == "wgan")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "categorical"])
def test_vae_shapes_and_gradients(shape, arch, likelihood):
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_shape=shape, arch=arch, likelihood=likelihood, latent_dim=3,
                          hidden=32, channels=8, num_classes=10))
    batch = _batch(shape)
    parts = model.negative_elbo(batch)
    assert {k: v.shape for k, v in parts.items()} == {k: (4,) for k in parts}
    parts["loss"].mean().backward()
    assert _grads_reach(model, list(model.parameters())) == []
    assert model.sample(3).shape == (3, *shape)
    assert model.reconstruct(batch["x"], batch["y"]).shape == (4, *shape)
    images = model.sample(5, mean=True)
    assert images.min() >= 0 and images.max() <= 1


def test_categorical_vae_untrained_is_near_uniform_and_iwae_is_tighter():
    torch.manual_seed(0)
    model = VAE(VAEConfig(latent_dim=4, hidden=32))
    batch = _batch((1, 8, 8), n=16)
    neg_elbo = model.negative_elbo(batch)["neg_elbo"].mean().item()
    assert abs(neg_elbo - 64 * math.log(17)) < 15  # an untrained decoder is roughly uniform
    torch.manual_seed(1)
    with torch.no_grad():
        elbo_avg = torch.stack([model.evaluate(batch)["neg_elbo"] for _ in range(50)]).mean(0)
    log_w = model.iwae_log_weights(batch, k=50)
    assert log_w.shape == (50, 16)
    iwae = iwae_nll(log_w)
    # the bound holds in expectation; averaged over 16 images and 50 draws it holds here
    assert iwae.shape == (16,) and iwae.mean() < elbo_avg.mean()


@pytest.mark.parametrize("decoder", ["made", "causal_conv"])
def test_autoregressive_decoder_only_sees_earlier_pixels(decoder):
    torch.manual_seed(0)
    model = VAE(VAEConfig(latent_dim=4, hidden=64, channels=16, autoregressive=True,
                          ar_decoder=decoder)).eval()
    levels = torch.randint(0, 17, (1, 1, 8, 8))
    x, moved = levels / 16, (levels + 5) % 17 / 16  # every pixel differs between x and moved
    z = torch.randn(1, 4)

    def logits(image):  # (L, D)
        return model.decode(z, None, image).reshape(17, 64)

    base = logits(x)
    for i in (0, 1, 30, 63):
        later = x.clone().view(64)
        later[i:] = moved.view(64)[i:]  # change pixel i and everything after it
        assert torch.allclose(logits(later.view(1, 1, 8, 8))[:, i], base[:, i])
        if i:
            earlier = x.clone().view(64)
            earlier[i - 1] = moved.view(64)[i - 1]
            assert not torch.allclose(logits(earlier.view(1, 1, 8, 8))[:, i], base[:, i])
    assert model.sample(2).shape == (2, 1, 8, 8)


def test_kl_annealing_ramps_the_weight():
    model = VAE(VAEConfig(beta=0.5, kl_warmup_steps=100))
    assert model.kl_weight(0) == pytest.approx(0.005)
    assert model.kl_weight(49) == pytest.approx(0.25)
    assert model.kl_weight(500) == 0.5


def test_wrong_image_size_is_refused_naming_shapes():
    model = GAN(GANConfig(data_shape=(1, 8, 8)))
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\), got \(2, 1, 28, 28\)"):
        model.discriminator(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\), got \(2, 64\)"):
        VAE(VAEConfig()).negative_elbo({"x": torch.rand(2, 64)})
    with pytest.raises(ValueError, match=r"z of shape \(B, 32\), got \(2, 5\)"):
        model.generator(torch.randn(2, 5))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="valid"):
        GANConfig(loss="lsgan")
    with pytest.raises(ValueError, match="valid"):
        VAEConfig(likelihood="poisson")
    with pytest.raises(ValueError, match="gaussian"):
        VAEConfig(likelihood="gaussian", autoregressive=True)
    with pytest.raises(ValueError, match="unknown ar_decoder 'rnn'"):
        VAEConfig(autoregressive=True, ar_decoder="rnn")
    with pytest.raises(ValueError, match="at most 256 pixels"):
        VAEConfig(data_shape=(1, 28, 28), autoregressive=True)
    with pytest.raises(ValueError, match=r"H, W >= 4.*\(2,\)"):
        GAN(GANConfig(data_shape=(2,), arch="dcgan"))
    with pytest.raises(ValueError, match="labels"):
        VAE(VAEConfig(num_classes=10)).negative_elbo({"x": torch.rand(2, 1, 8, 8)})


def test_made_masks_are_autoregressive():
    masks = layers.made_masks(5, [7, 7], 3)
    total = masks[2] @ masks[1] @ masks[0]  # paths from each input to each output unit
    for out_unit in range(15):
        pixel = out_unit // 3
        assert (total[out_unit, pixel:] == 0).all()


@pytest.mark.parametrize("decoder", ["made", "causal_conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical"])
def test_autoregressive_vae_gradients_reach_every_parameter(decoder, likelihood):
    torch.manual_seed(0)
    model = VAE(VAEConfig(latent_dim=3, hidden=32, channels=8, autoregressive=True,
                          ar_decoder=decoder, likelihood=likelihood, num_classes=10))
    batch = _batch((1, 8, 8))
    model.negative_elbo(batch)["loss"].mean().backward()
    assert _grads_reach(model, list(model.parameters())) == []
    assert model.sample(2).shape == (2, 1, 8, 8)
