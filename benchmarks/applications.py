"""Chapter 8's applications, each beside its baselines, measured in one run (CPU, several minutes).

1. Augmentation: 10 labelled digits per class (8x8, scikit-learn), 10 draws. An RBF SVM trained
   on the labelled images alone, on them plus all one-pixel shifts, and on them plus images of a
   VAE trained without labels on the 1,000 training images (made class-conditional through the
   labelled images' latent codes). Tested on the 447 test digits.
2. Anomaly detection, one digit normal: offline MNIST (400 training images of the normal digit,
   the 1,000 held-out test images scored). VAE -log p(x) (IWAE bound), and its complexity-
   corrected version, against PCA reconstruction error, nearest-neighbour distance and a
   one-class SVM. Mean AUROC over the ten digits.
3. Inpainting the hidden half of the 447 test digits: a VAE trained with masks (mean of 8 sampled
   completions, and one sample) against nearest neighbours (1 and 5), ridge regression and
   biharmonic smoothing. PSNR on the hidden pixels; accuracy of the shipped digits classifier
   (``coursekit.features``, trained on the train and validation digits only) on completions.

Run: ``OMP_NUM_THREADS=1 COURSEKIT_OFFLINE=1 python benchmarks/applications.py`` (add ``--quick``
for a smoke run with tiny settings). The last line holds the figures the issue asks for.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from coursekit import seed_everything
from coursekit.apps import anomaly, augment, inpaint
from coursekit.data import digits, mnist
from coursekit.features import accuracy, feature_net
from coursekit.models import VAE, VAEConfig
from coursekit.train import TrainConfig, fit


@dataclass
class BenchConfig:
    draws: int = 10                 # labelled sets drawn for augmentation
    aug_vae_epochs: int = 150       # epochs of the unlabelled VAE (digits)
    anomaly_epochs: int = 100       # epochs of each one-class VAE (MNIST, 400 images)
    anomaly_digits: tuple = tuple(range(10))  # normal classes evaluated
    anomaly_k: int = 32             # importance samples of the IWAE bound
    inpaint_epochs: int = 40        # epochs of the mask-trained VAE (digits)
    inpaint_samples: int = 8        # completions averaged
    pca_components: int = 20        # PCA baseline (fixed in advance, not tuned on the test split)
    seed: int = 0


QUICK = BenchConfig(draws=2, aug_vae_epochs=3, anomaly_epochs=2, anomaly_digits=(0, 1),
                    anomaly_k=4, inpaint_epochs=2)


def _fit_vae(data, config: VAEConfig, epochs: int, seed: int) -> VAE:
    seed_everything(seed)
    vae = VAE(config)
    fit(vae, data, TrainConfig(epochs=epochs, batch_size=64, device="cpu", seed=seed))
    return vae.eval()


def run_augmentation(cfg: BenchConfig) -> dict:
    train, test = digits("train"), digits("test")
    vae = _fit_vae(train.images, VAEConfig(latent_dim=8, hidden=256), cfg.aug_vae_epochs,
                   cfg.seed)  # images only: the labels are never seen by the generator
    acfg = augment.AugmentConfig()
    acc = {"real": [], "shift": [], "generated": []}
    for draw in range(cfg.draws):
        idx = augment.sample_labelled(train.labels, acfg.per_class, seed=draw)
        x, y = train.images[idx], train.labels[idx]
        xs, ys = augment.shift_augment(x, y)
        xg, yg = augment.latent_class_samples(vae, x, y, acfg.generated_per_class,
                                              scale=acfg.latent_scale, seed=draw)
        w = np.r_[np.ones(len(x)), np.full(len(xg), acfg.generated_weight)]
        acc["real"].append(augment.classifier_accuracy(x, y, test.images, test.labels,
                                                       svm_c=acfg.svm_c))
        acc["shift"].append(augment.classifier_accuracy(torch.cat([x, xs]), torch.cat([y, ys]),
                                                        test.images, test.labels,
                                                        svm_c=acfg.svm_c))
        acc["generated"].append(augment.classifier_accuracy(
            torch.cat([x, xg]), torch.cat([y, yg]), test.images, test.labels, w,
            svm_c=acfg.svm_c))
    out = {k: 100 * float(np.mean(v)) for k, v in acc.items()}
    out.update({f"{k}_std": 100 * float(np.std(v)) for k, v in acc.items()})
    return out


def run_anomaly(cfg: BenchConfig) -> dict:
    train, test = mnist("train", source="offline"), mnist("test", source="offline")
    bits = anomaly.complexity_bits(test.images)
    scores = {"pca": [], "knn": [], "ocsvm": [], "vae": [], "vae_minus_png": []}
    for digit in cfg.anomaly_digits:
        normal, _ = anomaly.one_class_split(train.images, train.labels, digit)
        _, is_anomaly = anomaly.one_class_split(test.images, test.labels, digit)
        vae = _fit_vae({"x": normal}, VAEConfig(data_shape=(1, 28, 28), latent_dim=16,
                                                hidden=256, likelihood="gaussian"),
                       cfg.anomaly_epochs, cfg.seed)
        nll = anomaly.vae_score(vae, test.images, k=cfg.anomaly_k, seed=cfg.seed)
        for name, s in (("pca", anomaly.pca_score(normal, test.images, cfg.pca_components)),
                        ("knn", anomaly.knn_score(normal, test.images, k=1)),
                        ("ocsvm", anomaly.ocsvm_score(normal, test.images)),
                        ("vae", nll),
                        ("vae_minus_png", nll / np.log(2) - bits)):
            scores[name].append(anomaly.auroc(s, is_anomaly))
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    out.update({f"{k}[{d}]": v[i] for k, v in scores.items()
                for i, d in enumerate(cfg.anomaly_digits) if k in ("pca", "vae")})
    return out


def run_inpainting(cfg: BenchConfig) -> dict:
    train, val, test = digits("train"), digits("val"), digits("test")
    pool = torch.cat([train.images, val.images])  # what the digits classifier was trained on
    levels = torch.cat([train.levels, val.levels])
    net = feature_net("digits")
    kinds = ("bottom", "right", "top", "left", "centre")
    masks = [inpaint.make_mask(8, 8, k) for k in kinds]
    vae = _fit_vae(inpaint.masked_training_data(pool, masks, levels),
                   VAEConfig(latent_dim=16, hidden=256), cfg.inpaint_epochs, cfg.seed)
    x, y = test.images, test.labels
    rows = {}
    for kind, mask in zip(kinds[:2], masks):
        samples = inpaint.encoder_inpaint(vae, x, mask, cfg.inpaint_samples, seed=cfg.seed)
        means = inpaint.encoder_inpaint(vae, x, mask, cfg.inpaint_samples, seed=cfg.seed,
                                        pixel_mean=True)
        fills = {"model_mean": samples.mean(0), "model_one": samples[0],
                 "model_mean_rb": means.mean(0),
                 "nn": inpaint.nearest_neighbour_inpaint(x, mask, pool, k=1),
                 "knn5": inpaint.nearest_neighbour_inpaint(x, mask, pool, k=5),
                 "ridge": inpaint.ridge_inpaint(x, mask, pool),
                 "biharmonic": inpaint.biharmonic_inpaint(x, mask)}
        for name, filled in fills.items():
            psnr = float(inpaint.masked_psnr(filled, x, mask).mean())
            acc = 100 * accuracy(net, filled, y)
            rows.setdefault(name, []).append((psnr, acc))
        one_acc = np.mean([accuracy(net, s, y) for s in samples]) * 100
        rows.setdefault("model_one_avg_acc", []).append((float("nan"), float(one_acc)))
    return {name: (float(np.mean([r[0] for r in v])), float(np.mean([r[1] for r in v])))
            for name, v in rows.items()}


def _timed(part, cfg: BenchConfig):
    torch.set_num_threads(1)
    start = time.process_time()
    result = part(cfg)
    return result, time.process_time() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke test)")
    parser.add_argument("--jobs", type=int, default=3, help="parts run in parallel processes")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else BenchConfig()
    parts = (run_augmentation, run_anomaly, run_inpainting)
    if args.jobs > 1:  # the three parts are independent: one process each
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(_timed, part, cfg) for part in parts]
            (aug, t_aug), (ano, t_ano), (inp, t_inp) = [f.result() for f in futures]
    else:
        (aug, t_aug), (ano, t_ano), (inp, t_inp) = [_timed(part, cfg) for part in parts]

    print("1. augmentation, 10 labelled digits per class, SVM accuracy (%) on 447 test "
          f"digits, mean over {cfg.draws} draws")
    for name in ("real", "shift", "generated"):
        print(f"  {name:10s} {aug[name]:6.2f} +- {aug[name + '_std']:.2f}")
    print(f"  [{t_aug:.0f} s CPU]")

    print("2. anomaly detection, offline MNIST, mean AUROC over normal digits "
          f"{list(cfg.anomaly_digits)}")
    for name, value in ano.items():
        print(f"  {name:14s} {value:.4f}")
    print(f"  [{t_ano:.0f} s CPU]")

    print("3. inpainting the hidden half of 447 test digits (bottom, right): PSNR (dB) on "
          "hidden pixels, classifier accuracy (%)")
    for name, (psnr, acc) in inp.items():
        print(f"  {name:18s} psnr={psnr:6.2f} acc={acc:6.2f}")
    print(f"  [{t_inp:.0f} s CPU]")

    result = {"aug_gain": aug["generated"] - aug["real"],
              "aug_minus_shift": aug["generated"] - aug["shift"],
              "anomaly_auroc_vae": ano["vae"],
              "anomaly_auroc_pca": ano["pca"],
              "inpaint_psnr_model": inp["model_mean"][0], "inpaint_psnr_nn": inp["nn"][0],
              "inpaint_acc_model": inp["model_mean"][1], "inpaint_acc_nn": inp["nn"][1]}
    print(" ".join(f"{k}={v:.4f}" if "auroc" in k else f"{k}={v:.2f}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
