"""Chapter 6's package code: the M2 bounds (the ELBO identity and the bound relation), label
draws and semi-supervised data, augmentations, InfoNCE, probes, zero-shot scores and models,
determinism through the engine, and clear errors for bad input."""

import math

import numpy as np
import pytest
import torch

from coursekit.data import digits
from coursekit.fewlabels import (ContrastiveConfig, ContrastiveEncoder, augment_digits,
                                 draw_labelled, info_nce, linear_probe, semi_supervised_data)
from coursekit.models.m2 import M2, M2Config, random_shift
from coursekit.train import TrainConfig, fit
from coursekit.zeroshot import (SEVEN_SEGMENT, AttributeVAE, AttributeVAEConfig, dap_predict,
                                gzsl_scores, harmonic_mean, unseen_splits)


def _batch(n=6, seed=0, labelled=3):
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 17, (n, 1, 8, 8), generator=g)
    y = torch.full((n,), -1)
    y[:labelled] = torch.arange(labelled) % 10
    return {"x": levels.float() / 16, "levels": levels, "y": y}


@pytest.mark.parametrize("classifier", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["categorical", "bernoulli"])
def test_m2_shapes_and_gradients(classifier, likelihood):
    torch.manual_seed(0)
    model = M2(M2Config(latent_dim=4, hidden=32, classifier=classifier, likelihood=likelihood,
                        augment=True, consistency=1.0))
    batch = _batch()
    assert model.classify(batch["x"]).shape == (6, 10)
    assert model.labelled_bounds_all(batch).shape == (6, 10)
    assert model.unlabelled_bound(batch).shape == (6,)
    assert model.sample(3, labels=torch.arange(3)).shape == (3, 1, 8, 8)
    loss, logs = model.loss("m2", batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and {"labelled_bound", "unlabelled_bound", "ce",
                                     "consistency"} <= set(logs)
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []
    assert set(model.evaluate(batch)) == {"neg_elbo_unlabelled", "error"}


def test_unlabelled_bound_is_expected_labelled_bound_plus_entropy():
    """-U(x) = E_q(y|x)[-L(x, y)] + H(q(y|x)), with the same noise eps for every class."""
    torch.manual_seed(0)
    model = M2(M2Config(latent_dim=4, hidden=32)).eval()
    batch = _batch()
    eps = torch.randn(6, 4)
    q = model.classify(batch["x"]).softmax(1)                               # (B, K)
    expected = sum(q[:, k] * model.labelled_bound(batch, torch.full((6,), k), eps)
                   for k in range(10))
    entropy = -(q * q.log()).sum(1)
    u = model.unlabelled_bound(batch, eps)
    torch.testing.assert_close(-u, -expected + entropy, rtol=1e-5, atol=1e-4)
    # the entropy term matters: without it the identity is off by H, which is far from 0 here
    assert entropy.min() > 1.0


def test_unlabelled_bound_is_below_log_marginal_and_tight_at_the_posterior():
    """-U(x) <= log sum_y exp(-L(x, y)), with equality when q(y|x) = exp(-L) / sum exp(-L)."""
    torch.manual_seed(0)
    model = M2(M2Config(latent_dim=4, hidden=32)).eval()
    batch = _batch()
    eps = torch.randn(6, 4)
    neg_l = -model.labelled_bounds_all(batch, eps)                          # (B, K)
    log_marginal = torch.logsumexp(neg_l, dim=1)
    assert (-model.unlabelled_bound(batch, eps) <= log_marginal + 1e-4).all()
    tight = -model.unlabelled_bound(batch, eps, logits=neg_l)
    torch.testing.assert_close(tight, log_marginal, rtol=1e-5, atol=1e-3)
    # and the labelled bound of the true class is never above the marginal
    assert (neg_l.max(1).values <= log_marginal).all()


def test_labelled_bound_is_a_conditional_vae_bound():
    """L(x, y) = -log p(x|y,z) + KL - log p(y): with log p(y) = -log 10 the difference between
    two models' bounds is unaffected, and the bound exceeds log 10 (rec and KL are >= 0)."""
    torch.manual_seed(0)
    model = M2(M2Config(latent_dim=4, hidden=32)).eval()
    batch = _batch()
    bound = model.labelled_bound(batch, torch.zeros(6, dtype=torch.long), torch.zeros(6, 4))
    assert (bound > math.log(10)).all()


def test_m2_training_is_deterministic_and_learns():
    train = digits("val")
    index = draw_labelled(train.labels, 3, seed=0)
    data = semi_supervised_data(train.images, train.labels, index, 10, train.levels)
    config = TrainConfig(epochs=3, batch_size=100, seed=0, device="cpu")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # the initial weights; fit seeds the rest
        model = M2(M2Config(latent_dim=4, hidden=64, alpha=10.0))
        history = fit(model, data, config).history
        runs.append((model.predict(train.images), history.losses["ce"]))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert runs[0][1][-1] < runs[0][1][0]  # the labelled cross-entropy falls


def test_m2_bad_input():
    model = M2(M2Config(latent_dim=4, hidden=32))
    batch = _batch()
    # the data is checked once, before training (fit calls check_data), not at every step
    with pytest.raises(ValueError, match=r"labels must lie in 0..9.*\[10\]"):
        model.check_data({**batch, "y": torch.tensor([10, -1, -1, -1, -1, -1])})
    with pytest.raises(ValueError, match="one entry per image"):
        model.check_data({**batch, "y": torch.tensor([1, -1])})
    with pytest.raises(ValueError, match=r"levels must lie in 0..16"):
        model.check_data({**batch, "levels": batch["levels"] + 17})
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model.classify(torch.zeros(2, 64))
    with pytest.raises(ValueError, match="unknown phase"):
        model.loss("vae", batch, 0)
    with pytest.raises(ValueError, match="unknown classifier"):
        M2Config(classifier="resnet")


def test_draw_labelled_is_stratified_and_deterministic():
    labels = digits("train").labels
    a, b = draw_labelled(labels, 3, seed=5), draw_labelled(labels, 3, seed=5)
    assert np.array_equal(a, b) and not np.array_equal(a, draw_labelled(labels, 3, seed=6))
    assert np.bincount(labels[a].numpy(), minlength=10).tolist() == [3] * 10
    with pytest.raises(ValueError, match="class 1 has 1 examples"):
        draw_labelled(np.array([0, 0, 1]), 2, seed=0)
    with pytest.raises(ValueError, match="per_class"):
        draw_labelled(labels, 0, seed=0)


def test_semi_supervised_data_and_its_errors():
    images, labels = torch.rand(20, 1, 8, 8), torch.arange(20) % 2
    data = semi_supervised_data(images, labels, [0, 1], num_classes=2)
    assert (data["y"] >= 0).sum() == (data["y"] < 0).sum() + 2 - 2  # 18 labelled rows, 18 not
    assert (data["y"][:20] >= 0).sum() == 2 and len(data["x"]) == 36
    with pytest.raises(ValueError, match=r"no labelled example of class\(es\) \[1\]"):
        semi_supervised_data(images, labels, [0, 2], num_classes=2)
    with pytest.raises(ValueError, match=r"must lie in 0..1, got \[5\]"):
        semi_supervised_data(images, torch.tensor([0, 1, 5] + [0] * 17), [0, 1, 2], 2)
    with pytest.raises(ValueError, match="same length"):
        semi_supervised_data(images, labels[:10], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="repeats"):
        semi_supervised_data(images, labels, [0, 1, 1], num_classes=2)


def test_augmentations_keep_shapes_ranges_and_levels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 8, 8, generator=g)
    view = augment_digits(x, generator=torch.Generator().manual_seed(1))
    again = augment_digits(x, generator=torch.Generator().manual_seed(1))
    assert view.shape == x.shape and torch.equal(view, again) and 0 <= view.min() <= view.max() <= 1
    assert not torch.equal(view, x)
    identity = augment_digits(x, max_degrees=0, max_shift=0, scale=(1, 1), noise=0)
    torch.testing.assert_close(identity, x, atol=1e-5, rtol=0)
    levels = torch.randint(0, 17, (8, 1, 8, 8), generator=g)
    shifted = random_shift(levels, 1)
    assert shifted.dtype == levels.dtype and shifted.shape == levels.shape
    assert shifted.sum() <= levels.sum()  # a shift only loses border pixels
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        augment_digits(torch.rand(8, 64))


def test_info_nce():
    z = torch.randn(6, 5)
    # identical views are easy, random pairs are at chance, ~log(2B - 1)
    assert info_nce(z, z, 0.1) < info_nce(z, torch.randn(6, 5), 0.1)
    far = info_nce(torch.randn(4000, 3), torch.randn(4000, 3), temperature=1e3)
    assert abs(far.item() - math.log(7999)) < 0.01
    with pytest.raises(ValueError, match=r"both be \(B, D\)"):
        info_nce(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(z, z, 0.0)


def test_contrastive_encoder_trains_through_the_engine_deterministically():
    images = digits("val").images[:128]
    out = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ContrastiveEncoder(ContrastiveConfig(hidden=32, features=8, projection=8))
        history = fit(model, images, TrainConfig(epochs=2, batch_size=64, seed=0, device="cpu"))
        out.append((model.represent(images), history.history.losses["info_nce"]))
    assert torch.equal(out[0][0], out[1][0]) and out[0][1] == out[1][1]
    assert out[0][0].shape == (128, 8)


def test_linear_probe():
    ds = digits("val")
    x = ds.images.flatten(1)
    index = draw_labelled(ds.labels, 5, seed=0)
    acc = linear_probe(x[index], ds.labels[index], x, ds.labels, unlabelled_features=x)
    assert 0.5 < acc <= 1.0
    with pytest.raises(ValueError, match=r"class\(es\) \[9\]"):
        keep = index[ds.labels[index] != 9]
        linear_probe(x[keep], ds.labels[keep], x, ds.labels)
    with pytest.raises(ValueError, match="same length"):
        linear_probe(x[index], ds.labels[:3], x, ds.labels)


def test_seven_segment_codes_and_splits():
    assert SEVEN_SEGMENT.shape == (10, 7) and len({tuple(r) for r in SEVEN_SEGMENT}) == 10
    assert SEVEN_SEGMENT[8].sum() == 7 and SEVEN_SEGMENT[1].tolist() == [0, 1, 1, 0, 0, 0, 0]
    splits = unseen_splits()
    assert len(splits) == 120 == len(set(splits))


def test_harmonic_mean_and_gzsl_scores():
    assert harmonic_mean(1.0, 1.0) == 1.0 and harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.8, 0.2) == pytest.approx(0.32)
    # per-class means: class 0 has three images (all right), class 1 one image (wrong)
    scores = gzsl_scores([0, 0, 0, 0, 2, 2], [0, 0, 0, 1, 2, 2], unseen=[2])
    assert scores == {"seen": 0.5, "unseen": 1.0, "h": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        harmonic_mean(1.5, 0.2)
    with pytest.raises(ValueError, match="same length"):
        gzsl_scores([0, 1], [0, 1, 2], unseen=[2])


def test_dap_and_attribute_vae():
    ds = digits("val")
    x, y = ds.images.flatten(1).numpy(), ds.labels.numpy()
    unseen = (0, 1, 2)
    seen = ~np.isin(y, unseen)
    pred = dap_predict(x[seen], y[seen], x, unseen)
    assert pred.shape == y.shape and set(pred.tolist()) <= set(range(10))
    assert gzsl_scores(pred, y, unseen)["seen"] > 0.3
    with pytest.raises(ValueError, match=r"unseen class\(es\) \[0, 1, 2\]"):
        dap_predict(x, y, x, unseen)
    with pytest.raises(ValueError, match="0..9"):
        dap_predict(x[seen], y[seen], x, (11,))
    a = torch.tensor(SEVEN_SEGMENT[y[seen]], dtype=torch.float32)
    model = AttributeVAE(AttributeVAEConfig(hidden=32))
    data = {"x": ds.images[seen], "levels": ds.levels[seen], "a": a}
    history = fit(model, data, TrainConfig(epochs=2, seed=0, device="cpu")).history
    assert history.losses["neg_elbo"][1] < history.losses["neg_elbo"][0]
    images = model.sample(4, codes=torch.tensor(SEVEN_SEGMENT[list(unseen)]))
    assert images.shape == (12, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    with pytest.raises(ValueError, match=r"a must be \(B, 7\)"):
        model.negative_elbo({"x": ds.images[:3], "a": a[:2]})


def test_m2_on_feature_vectors_with_a_gaussian_likelihood():
    """M1+M2 stacking: M2 on flat features (e.g. a VAE's latent means)."""
    torch.manual_seed(0)
    model = M2(M2Config(data_shape=(12,), likelihood="gaussian", latent_dim=3, hidden=16))
    batch = {"x": torch.randn(5, 12), "y": torch.tensor([0, 1, -1, -1, -1])}
    loss, _ = model.loss("m2", batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and model.logvar_x.grad is not None
    assert model.sample(4, labels=torch.arange(4)).shape == (4, 12)
    with pytest.raises(ValueError, match=r"need images \(C, H, W\)"):
        M2Config(data_shape=(12,), consistency=1.0)


def test_moved_models_are_re_exported():
    import coursekit.fewlabels as fl
    import coursekit.zeroshot as zs
    from coursekit.models import attribute_vae, contrastive
    from coursekit.models.base import TrainableModel

    assert fl.ContrastiveEncoder is contrastive.ContrastiveEncoder
    assert fl.info_nce is contrastive.info_nce
    assert zs.AttributeVAE is attribute_vae.AttributeVAE
    assert issubclass(contrastive.ContrastiveEncoder, TrainableModel)
    assert issubclass(attribute_vae.AttributeVAE, TrainableModel)
    with pytest.raises(ValueError, match="codes"):
        attribute_vae.AttributeVAE().sample(2, labels=torch.arange(2))


def test_classifier_alone_has_no_generative_part():
    torch.manual_seed(0)
    model = M2(M2Config(generative=False, classifier="conv", consistency=3.0, alpha=10.0))
    assert model.encoder is None and model.decoder is None
    batch = {"x": torch.rand(6, 1, 8, 8), "y": torch.tensor([0, 1, -1, -1, -1, -1])}
    loss, logs = model.loss("m2", batch, 0)
    assert set(logs) == {"ce", "consistency"} and loss.requires_grad
    with pytest.raises(ValueError, match="generative=False"):
        model.sample(2)


def test_prior_on_y_enters_the_bounds():
    torch.manual_seed(0)
    m2 = M2(M2Config(latent_dim=4, hidden=32)).eval()
    levels = torch.randint(0, 17, (3, 1, 8, 8))
    batch = {"x": levels / 16, "levels": levels}
    eps = torch.randn(3, 4)
    uniform = m2.labelled_bounds_all(batch, eps)
    prior = torch.full((3, 10), 0.05)
    prior[:, 2] = 0.55
    with_prior = m2.labelled_bounds_all({**batch, "prior": prior}, eps)
    # L(x, y) holds -log p(y): the prior moves each bound by log(1/10) - log prior(y)
    assert torch.allclose(with_prior - uniform, -prior.log() - math.log(10), atol=1e-4)
    data = semi_supervised_data(torch.rand(20, 1, 8, 8), torch.arange(20) % 10,
                                np.arange(10), 10, prior=np.full((20, 10), 0.1))
    assert data["prior"].shape == (len(data["x"]), 10)
    with pytest.raises(ValueError, match="prior must be"):
        semi_supervised_data(torch.rand(20, 1, 8, 8), torch.arange(20) % 10, np.arange(10), 10,
                             prior=np.full((20, 9), 0.1))


def test_importance_sampled_log_marginal_is_above_the_bound():
    torch.manual_seed(0)
    m2 = M2(M2Config(latent_dim=4, hidden=32)).eval()
    levels = torch.randint(0, 17, (8, 1, 8, 8))
    batch = {"x": levels / 16, "levels": levels}
    with torch.no_grad():
        elbo = -m2.unlabelled_bound(batch).mean()
    assert m2.log_marginal(batch, samples=32).mean() > elbo


def test_dap_priors_and_calibrated_stacking():
    from coursekit.zeroshot import calibrated_stacking, dap_scores, stacking_gamma

    tr, te = digits("train"), digits("test")
    x, y = tr.images.flatten(1).numpy(), tr.labels.numpy()
    unseen = (0, 1, 2)
    seen = ~np.isin(y, unseen)
    scores = dap_scores(x[seen], y[seen], te.images.flatten(1).numpy(), unseen)
    plain = dap_scores(x[seen], y[seen], te.images.flatten(1).numpy(), unseen, priors=False)
    assert scores.shape == (len(te.labels), 10) and not np.allclose(scores, plain)
    gamma = stacking_gamma(scores, unseen, 0.3)
    pred = calibrated_stacking(scores, unseen, gamma)
    assert abs(np.isin(pred, unseen).mean() - 0.3) < 0.02  # the share asked for
    yt = te.labels.numpy()
    assert gzsl_scores(pred, yt, unseen)["h"] > gzsl_scores(scores.argmax(1), yt, unseen)["h"]
    with pytest.raises(ValueError, match="unseen_share"):
        stacking_gamma(scores, unseen, 1.0)
