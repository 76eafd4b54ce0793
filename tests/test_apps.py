"""coursekit.apps (Chapter 8): masks and PSNR on hidden pixels only, AUROC against scikit-learn,
augmentation keeps labels aligned, seeded determinism, and clear errors for bad input."""


import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from coursekit.apps import anomaly, inpaint
from coursekit.apps.anomaly import auroc, knn_score, ocsvm_score, one_class_split, pca_score
from coursekit.apps.augment import (check_labels, class_samples, sample_labelled,
                                    shift_augment, spread_labels)
from coursekit.apps.inpaint import (InpaintConfig, apply_mask, biharmonic_inpaint, check_mask,
                                    make_mask, masked_psnr, nearest_neighbour_inpaint,
                                    ridge_inpaint, vae_inpaint)
from coursekit.losses import reparameterize
from coursekit.models import M2, VAE, M2Config, VAEConfig


# ------------------------------------------------------------------------------------ inpainting
@pytest.mark.parametrize("kind", ["bottom", "top", "left", "right", "centre"])
def test_masks_hide_the_stated_part(kind):
    m = make_mask(8, 6, kind)
    assert m.dtype == torch.bool and m.shape == (8, 6)
    assert 0 < int(m.sum()) < 48
    if kind == "bottom":
        assert m[4:].all() and not m[:4].any()
    if kind == "right":
        assert m[:, 3:].all() and not m[:, :3].any()
    if kind == "centre":
        assert not m[0].any() and not m[-1].any() and m[4, 3]


def test_psnr_counts_hidden_pixels_only():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 8, 8, generator=g)
    m = make_mask(8, 8, "bottom")
    x_hat = x.clone()
    x_hat[:, :, ~m] = 1 - x_hat[:, :, ~m]          # ruin the visible pixels: must not matter
    x_hat[:, :, m] += 0.1                            # hidden pixels off by exactly 0.1
    assert torch.allclose(masked_psnr(x_hat, x, m), torch.full((3,), 20.0, dtype=torch.float64))
    x_hat[:, :, m] = x[:, :, m]
    assert torch.isinf(masked_psnr(x_hat, x, m)).all()


def test_apply_mask_hides_only_masked_pixels():
    x = torch.rand(2, 1, 5, 5)
    m = make_mask(5, 5, "centre")
    out = apply_mask(x, m, fill=-1.0)
    assert (out[:, :, m] == -1).all() and torch.equal(out[:, :, ~m], x[:, :, ~m])


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(8, 7, dtype=torch.bool), "shape"),
    (torch.zeros(8, 8, dtype=torch.bool), "hides no pixel"),
    (torch.ones(8, 8, dtype=torch.bool), "hides all"),
    (torch.zeros(8, 8), "boolean"),
])
def test_bad_masks_are_refused(bad, match):
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=match):
        masked_psnr(x, x, bad)
    with pytest.raises(ValueError, match=match):
        nearest_neighbour_inpaint(x, bad, x)


def test_baselines_keep_visible_pixels_and_nn_copies_a_neighbour():
    g = torch.Generator().manual_seed(1)
    train = torch.rand(20, 1, 6, 6, generator=g)
    m = make_mask(6, 6, "right")
    x = apply_mask(train[:4], m)                     # the visible halves of training images
    for out in (nearest_neighbour_inpaint(x, m, train), ridge_inpaint(x, m, train),
                biharmonic_inpaint(x, m)):
        assert out.shape == x.shape and torch.equal(out[:, :, ~m], x[:, :, ~m])
        assert out.min() >= 0 and out.max() <= 1
    # each query's visible half is exactly a training image's: 1-NN recovers that image
    assert torch.allclose(nearest_neighbour_inpaint(x, m, train), train[:4])


def test_vae_inpaint_keeps_visible_pixels_and_is_seeded():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=3, hidden=16))
    x = torch.randint(0, 17, (4, 1, 8, 8)) / 16
    m = make_mask(8, 8, "bottom")
    for method in ("mwg", "pseudo_gibbs"):
        cfg = InpaintConfig(num_samples=3, steps=4, method=method, seed=5)
        a, b = vae_inpaint(vae, x, m, cfg), vae_inpaint(vae, x, m, cfg)
        assert a.shape == (3, 4, 1, 8, 8) and torch.equal(a, b)
        assert torch.equal(a[:, :, :, ~m], x[:, :, ~m].expand(3, -1, -1, -1))
        assert not torch.equal(a[0], a[1])          # samples differ from one another
    with pytest.raises(ValueError, match="method"):
        vae_inpaint(vae, x, m, InpaintConfig(method="gibbs"))


# ----------------------------------------------------------------------------- anomaly detection
def test_auroc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 50)
        y[:2] = [0, 1]
        s = rng.integers(0, 6, 50).astype(float)     # many ties
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([False, True])) == 1.0


@pytest.mark.parametrize("scores,labels,match", [
    ([0.1, 0.2], [1, 1], "both"),
    ([0.1, 0.2, 0.3], [0, 1], "entries"),
    ([0.1, float("nan")], [0, 1], "non-finite"),
    ([0.1, 0.2], [0, 2], "0/1"),
])
def test_auroc_bad_input(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        auroc(scores, labels)


def test_one_class_split_and_baselines_rank_a_planted_outlier_first():
    g = torch.Generator().manual_seed(0)
    normal = 0.1 * torch.randn(60, 5, generator=g)
    normal[:, 0] += torch.linspace(-1, 1, 60)       # normal data lie near a line
    test = torch.cat([normal[:10] + 0.01, torch.tensor([[0.0, 3.0, 3.0, 0.0, 0.0]])])
    for score in (pca_score(normal, test, 1), knn_score(normal, test, 3),
                  ocsvm_score(normal, test)):
        assert np.argmax(score) == 10
    labels = torch.tensor([0, 1, 2, 1])
    x, is_anomaly = one_class_split(torch.arange(4.0), labels, normal=1)
    assert x.tolist() == [1.0, 3.0] and is_anomaly.tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="out of range"):
        one_class_split(torch.arange(4.0), labels, normal=10)
    with pytest.raises(ValueError, match="labels must lie"):
        one_class_split(torch.arange(4.0), torch.tensor([0, 1, 12, 1]), normal=1)


def test_vae_score_is_seeded():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, hidden=16))
    x = torch.randint(0, 17, (5, 1, 8, 8)) / 16
    a = anomaly.vae_score(vae, x, k=4, seed=3)
    torch.rand(3)                                    # the global stream must not matter
    assert np.array_equal(a, anomaly.vae_score(vae, x, k=4, seed=3)) and a.shape == (5,)


# ---------------------------------------------------------------------------------- augmentation
def test_sample_labelled_is_stratified_and_seeded():
    labels = torch.arange(100) % 10
    idx = sample_labelled(labels, 3, seed=4)
    assert labels[idx].tolist() == [c for c in range(10) for _ in range(3)]
    assert len(set(idx.tolist())) == 30
    assert torch.equal(idx, sample_labelled(labels, 3, seed=4))
    assert not torch.equal(idx, sample_labelled(labels, 3, seed=5))
    with pytest.raises(ValueError, match="fewer than"):
        sample_labelled(labels, 11)


def test_shift_augment_keeps_labels_aligned():
    x = torch.zeros(3, 1, 5, 5)
    for i in range(3):
        x[i, 0, 2, 2] = 1.0
        x[i, 0, 0, i] = 0.5                          # a mark that identifies the image
    y = torch.tensor([7, 1, 4])
    xa, ya = shift_augment(x, y)
    assert xa.shape == (24, 1, 5, 5) and ya.shape == (24,)
    centres = [tuple((xa[j, 0] == 1).nonzero()[0].tolist()) for j in range(24)]
    assert len(set(centres)) == 8 and (2, 2) not in centres  # eight distinct one-pixel shifts
    for j in range(24):                               # the label travels with its image
        assert ya[j] == y[j % 3]
        assert xa[j].sum() <= x[j % 3].sum() + 1e-5  # a shift pushes pixels out, never in


@pytest.mark.parametrize("labels,match", [
    (torch.tensor([0, 1, 10]), "lie in"),
    (torch.tensor([0, -1, 2]), "lie in"),
    (torch.tensor([0.0, 1.0, 2.0]), "integer"),
    (torch.tensor([0, 1]), "labels for 3"),
])
def test_labels_out_of_range_are_refused(labels, match):
    x = torch.rand(3, 1, 5, 5)
    with pytest.raises(ValueError, match=match):
        shift_augment(x, labels)


def test_class_samples_label_every_image_and_are_seeded():
    torch.manual_seed(0)
    m2 = M2(M2Config(num_classes=3, latent_dim=2, hidden=16))
    a, ya = class_samples(m2, per_class=4, num_classes=3, seed=1)
    b, yb = class_samples(m2, per_class=4, num_classes=3, seed=1)
    c, _ = class_samples(m2, per_class=4, num_classes=3, seed=2)
    assert a.shape == (12, 1, 8, 8) and torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c)
    assert ya.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    with pytest.raises(ValueError, match="per_class"):
        class_samples(m2, per_class=0, num_classes=3)


def test_spread_labels_follow_the_graph_and_keep_the_given_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([0.0, 10.0, 20.0])
    y = torch.arange(30) % 3
    x = (centres[y][:, None] + torch.randn(30, 4, generator=g)).view(30, 1, 2, 2)
    labelled = [0, 1, 2]
    out = spread_labels(x, y, labelled, num_classes=3, neighbours=5)
    assert out.dtype == torch.int64 and torch.equal(out, y)   # well separated: all right
    wrong = y.clone()
    wrong[0] = 1                                               # a labelled row keeps its label
    assert spread_labels(x, wrong, labelled, num_classes=3, neighbours=5)[0] == 1
    with pytest.raises(ValueError, match="lie in"):
        spread_labels(x, y + 1, labelled, num_classes=3)


def test_spread_labels_classify_queries_and_give_soft_answers_as_scikit_learn():
    import warnings

    from sklearn.semi_supervised import LabelSpreading

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([0.0, 10.0, 20.0, 100.0])
    y = torch.arange(36) % 3
    group = torch.cat([torch.arange(30) % 3, torch.full((6,), 3)])  # 3: far off, no label
    x = (centres[group][:, None] + torch.randn(36, 4, generator=g)).view(36, 1, 2, 2)
    labelled = [0, 1, 2, 4]
    queries = centres[[2, 0, 1, 3]][:, None].expand(4, 4)  # (4, 4)
    out = spread_labels(x, y, labelled, num_classes=3, neighbours=5, queries=queries)
    assert out.tolist() == [2, 0, 1, 0]  # no label reached the last: class 0, as scikit-learn
    partial = np.full(len(y), -1)
    partial[labelled] = y[labelled].numpy()
    reference = LabelSpreading(kernel="knn", n_neighbors=5, max_iter=100)
    with warnings.catch_warnings():  # scikit-learn divides 0 by 0 for the far-off images
        warnings.simplefilter("ignore", RuntimeWarning)
        reference.fit(x.flatten(1).numpy(), partial)
        assert out.tolist() == reference.predict(queries.numpy()).tolist()
    soft = spread_labels(x, y, labelled, num_classes=3, neighbours=5, soft=True)
    assert soft.shape == (36, 3) and np.allclose(soft.sum(1), 1)
    assert np.allclose(soft[:30], reference.label_distributions_[:30])
    assert np.allclose(soft[30:], 1 / 3)  # no label reached them: uniform
    hard = spread_labels(x, y, labelled, num_classes=3, neighbours=5)
    assert torch.equal(hard[:30], y[:30])


def test_importance_inpaint_weights_the_visible_pixels():
    x = torch.randint(0, 17, (4, 1, 8, 8)) / 16
    mask = make_mask(8, 8, "bottom")
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, hidden=16))
    mean = inpaint.importance_inpaint(vae, x, mask, k=6, seed=3)
    assert torch.equal(mean, inpaint.importance_inpaint(vae, x, mask, k=6, seed=3))
    assert torch.equal(mean[:, :, ~mask], x[:, :, ~mask])
    # k = 1: one weight of 1, the completion is E[x_m | z] at that z ~ q(z | x_o)
    one = inpaint.importance_inpaint(vae, x, mask, k=1, seed=3)
    z_mu, z_logvar = vae.encode(inpaint.apply_mask(x, mask, inpaint.MASKED_FILL))
    gen = torch.Generator().manual_seed(3)
    z = reparameterize(z_mu, z_logvar, torch.randn(z_mu.shape, generator=gen))
    expected = vae.pixels(vae.decode(z), mean=True)
    assert torch.allclose(one[:, :, mask], expected[:, :, mask].detach(), atol=1e-6)
    draws = inpaint.importance_inpaint(vae, x, mask, k=6, seed=3, draws=3)
    assert draws.shape == (3, 4, 1, 8, 8)
    levels = draws[:, :, :, mask] * 16
    assert torch.allclose(levels, levels.round())             # draws are grey levels
    with pytest.raises(ValueError, match="k >= 1"):
        inpaint.importance_inpaint(vae, x, mask, k=0)


def test_mask_trained_vae_data_and_completions():
    x = torch.randint(0, 17, (5, 1, 8, 8)) / 16
    levels = torch.round(x * 16).long()
    masks = [make_mask(8, 8, "bottom"), make_mask(8, 8, "centre")]
    data = inpaint.masked_training_data(x, masks, levels)
    assert data["x"].shape == (15, 1, 8, 8) and torch.equal(data["levels"][10:], levels)
    assert (data["x"][5:10][:, :, masks[0]] == inpaint.MASKED_FILL).all()
    assert torch.equal(data["x"][:5], x)                   # the complete images come first
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, hidden=16))
    for pixel_mean in (False, True):
        a = inpaint.encoder_inpaint(vae, x, masks[0], 3, seed=2, pixel_mean=pixel_mean)
        b = inpaint.encoder_inpaint(vae, x, masks[0], 3, seed=2, pixel_mean=pixel_mean)
        assert a.shape == (3, 5, 1, 8, 8) and torch.equal(a, b)
        assert torch.equal(a[:, :, :, ~masks[0]], x[:, :, ~masks[0]].expand(3, -1, -1, -1))
    levels_hit = (a[:, :, :, masks[0]] * 16 - torch.round(a[:, :, :, masks[0]] * 16)).abs()
    assert levels_hit.max() > 1e-3                          # decoder means, not grey levels
    with pytest.raises(ValueError, match="hides no pixel"):
        inpaint.encoder_inpaint(vae, x, torch.zeros(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="levels must be"):
        inpaint.masked_training_data(x, masks, levels.float())
    with pytest.raises(ValueError, match="categorical"):
        inpaint.encoder_inpaint(VAE(VAEConfig(latent_dim=2, hidden=16, likelihood="bernoulli")),
                                x, masks[0])
