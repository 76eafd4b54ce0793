"""PSNR and SSIM agree with scikit-image (1e-6) on random and real images; bad input is refused."""

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from coursekit import data
from coursekit.metrics import PSNR, SSIM, psnr, ssim

TOL = 1e-6  # agreement with scikit-image, absolute (both compute in float64)


def _sk_ssim(x, y, data_range):
    """scikit-image's Wang et al. SSIM of one (C, H, W) pair."""
    xn, yn = x.double().numpy(), y.double().numpy()
    return structural_similarity(xn, yn, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=data_range,
                                 channel_axis=0)


def _pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 23, 31, generator=g)
    yield "random grey", x, (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1), 1.0
    x = torch.rand(2, 3, 16, 16, generator=g)
    yield "random rgb", x, torch.rand(x.shape, generator=g), 1.0
    x = 255 * torch.rand(2, 1, 20, 20, generator=g)
    yield "range 255", x, (x + 20 * torch.randn(x.shape, generator=g)).clamp(0, 255), 255.0
    photos = data.photos(("camera", "astronaut"))
    cam = photos["camera"][None, :, 100:228, 150:278]  # (1, 1, 128, 128)
    yield "camera + noise", cam, (cam + 0.05 * torch.randn(cam.shape, generator=g)).clamp(0, 1), 1.0
    ast = photos["astronaut"][None, :, :96, :128]  # (1, 3, 96, 128)
    blurred = torch.nn.functional.avg_pool2d(ast, 3, stride=1, padding=1, count_include_pad=False)
    yield "astronaut + blur", ast, blurred, 1.0


@pytest.mark.parametrize("name,x,y,data_range", list(_pairs()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_agree_with_scikit_image(name, x, y, data_range):
    ours_ssim, ours_psnr = ssim(x, y, data_range), psnr(x, y, data_range)
    for i in range(len(x)):
        ref_psnr = peak_signal_noise_ratio(x[i].double().numpy(), y[i].double().numpy(),
                                           data_range=data_range)
        assert abs(float(ours_psnr[i]) - ref_psnr) < TOL, name
        assert abs(float(ours_ssim[i]) - _sk_ssim(x[i], y[i], data_range)) < TOL, name


def test_identity_reduction_and_accumulation():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 16, 16, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.allclose(ssim(x, x, 1.0), torch.ones(6, dtype=torch.float64))
    assert torch.isinf(psnr(x, x, 1.0)).all()
    per_image = psnr(x, y, 1.0)
    assert float(psnr(x, y, 1.0, reduction="mean")) == pytest.approx(float(per_image.mean()))
    # pooled MSE (torchmetrics' default) gives at most the mean of per-image PSNRs (Jensen)
    assert float(psnr(x, y, 1.0, reduction="pooled")) <= float(per_image.mean()) + 1e-12
    m_psnr, m_ssim = PSNR(1.0), SSIM(1.0)
    for part in (slice(0, 2), slice(2, 6)):
        m_psnr.update(x[part], y[part])
        m_ssim.update(x[part], y[part])
    assert m_psnr.compute() == pytest.approx(float(per_image.mean()), abs=1e-12)
    assert m_ssim.compute() == pytest.approx(float(ssim(x, y, 1.0).mean()), abs=1e-12)
    assert PSNR.higher_is_better and SSIM.higher_is_better


def test_torchmetrics_conventions_differ_as_documented():
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio as tm_psnr, structural_similarity_index_measure as tm_ssim)

    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 24, 24, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    y[0] = x[0] + 0.01 * (y[0] - x[0])  # one nearly perfect image spreads the per-image PSNRs
    assert float(tm_psnr(y, x, data_range=1.0)) == pytest.approx(
        float(psnr(y, x, 1.0, reduction="pooled")), abs=1e-5)  # torchmetrics: float32
    assert float(psnr(y, x, 1.0, reduction="mean")) - float(tm_psnr(y, x, data_range=1.0)) > 1.0
    # torchmetrics averages an uncropped SSIM map: a different number on small images
    gap = abs(float(tm_ssim(y, x, data_range=1.0)) - float(ssim(y, x, 1.0, reduction="mean")))
    assert gap > 1e-3


@pytest.mark.parametrize("fn", [psnr, ssim])
def test_bad_input(fn):
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        fn(x, torch.rand(2, 1, 16, 15), 1.0)
    with pytest.raises(TypeError, match="same dtype"):
        fn(x, x.double(), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        bad = x.clone()
        bad[0, 0, 0, 0] = float("nan")
        fn(bad, x, 1.0)
    with pytest.raises(ValueError, match="wider than data_range"):
        fn(x * 255, x, 1.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)|4 dimensions"):
        fn(x[0], x[0], 1.0)
    with pytest.raises(ValueError, match="data_range"):
        fn(x, x, 0)
    with pytest.raises(ValueError, match="empty"):
        fn(x[:0], x[:0], 1.0)


def test_ssim_needs_the_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), 1.0)
