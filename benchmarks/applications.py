"""Chapter 8's applications, each beside its baselines, measured in one run (CPU, a few minutes).

1. Augmentation: 10 labelled digits per class (8x8, scikit-learn), ``draws`` draws. An RBF SVM
   trained on the labelled images alone; on them plus samples of Chapter 6's M2 trained on the
   1,000 training images (the 100 labels and the 900 unlabelled images); on them plus the 900
   unlabelled images labelled by label spreading (self-training). The weight of an added image
   is chosen on the 350 validation digits; the 447 test digits are scored once.
2. Anomaly detection, one digit normal: offline MNIST (400 training images of the normal digit,
   the 1,000 held-out test images scored). A VAE with a *normalised* likelihood of the 256 grey
   levels (discretised logistic, Salimans et al. 2017) scores ``-log p(x)`` (IWAE bound), raw
   and minus the PNG length (Serra et al. 2020); beside it the Gaussian and Bernoulli decoders'
   scores and PCA reconstruction error (20 components, fixed in advance). Mean AUROC over the
   ten digits.
3. Inpainting the hidden half (bottom, right) of the 447 test digits: a VAE trained with masks
   completes by importance-weighted imputation (MIWAE, Mattei and Frellsen 2019: the weighted
   conditional mean, and single draws by resampling), against the nearest neighbour, the mean
   of 5, ridge regression and biharmonic smoothing. PSNR on the hidden pixels; accuracy of the
   shipped digits classifier (``coursekit.features``, trained on train + val only), and FID of
   the completed digits to the real ones in that classifier's features: the distortion and the
   perception axes of Blau and Michaeli (2018).

Run: ``OMP_NUM_THREADS=1 python benchmarks/applications.py --jobs 2`` (``--quick`` for a smoke
run with tiny settings, which writes nothing). The last line holds the figures the issue asks
for; ``benchmarks/results/applications.json`` keeps them with the per-draw values.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from coursekit import results as results_file
from coursekit import seed_everything
from coursekit.apps import anomaly, augment, inpaint
from coursekit.data import digits, mnist
from coursekit.features import accuracy, extract_features, feature_net
from coursekit.fewlabels import semi_supervised_data
from coursekit.metrics import fid
from coursekit.models import M2, VAE, M2Config, VAEConfig
from coursekit.recipes import RECIPES
from coursekit.train import TrainConfig, fit


# The figures the last printed line holds (issue 23), in this order.
KEYS = ("anomaly_auroc_vae", "anomaly_auroc_pca", "inpaint_psnr_model", "inpaint_psnr_nn",
        "inpaint_acc_model", "inpaint_acc_nn", "aug_labelled_acc", "aug_generated_acc",
        "self_training_acc")


@dataclass
class BenchConfig:
    draws: int = 5                  # labelled sets drawn for augmentation
    m2_epochs: int = 12             # epochs of M2 (Chapter 6's recipe)
    anomaly_epochs: int = 60        # epochs of each one-class VAE (MNIST, 400 images)
    anomaly_digits: tuple = tuple(range(10))  # normal classes evaluated
    anomaly_likelihoods: tuple = ("logistic", "gaussian", "bernoulli")
    anomaly_k: int = 16             # importance samples of the IWAE bound
    inpaint_epochs: int = 30        # epochs of the mask-trained VAE (digits)
    inpaint_k: int = 64             # importance samples of the imputation
    inpaint_draws: int = 8          # single completions drawn (their mean: the K-sample mean)
    pca_components: int = 20        # PCA baseline (fixed in advance, not tuned on the test split)
    seed: int = 0


QUICK = BenchConfig(draws=1, m2_epochs=1, anomaly_epochs=2, anomaly_digits=(0, 1),
                    anomaly_k=4, inpaint_epochs=2, inpaint_k=4, inpaint_draws=2)


def _fit_vae(data, config: VAEConfig, epochs: int, seed: int) -> VAE:
    seed_everything(seed)
    vae = VAE(config)
    fit(vae, data, TrainConfig(epochs=epochs, batch_size=64, device="cpu", seed=seed))
    return vae.eval()


def run_augmentation(cfg: BenchConfig) -> dict:
    train, val, test = digits("train"), digits("val"), digits("test")
    acfg = augment.AugmentConfig()
    recipe = RECIPES["m2"]
    out: dict = {"labelled": [], "generated": [], "self_training": [],
                 "val": {f"{kind}_{w}": [] for kind in ("generated", "self_training")
                         for w in acfg.weights}, "test": {}}
    for draw in range(cfg.draws):
        idx = augment.sample_labelled(train.labels, acfg.per_class, seed=draw)
        x, y = train.images[idx], train.labels[idx]
        seed_everything(draw)
        m2 = M2(M2Config(**recipe.config))
        fit(m2, semi_supervised_data(train.images, train.labels, idx.numpy(), 10, train.levels),
            TrainConfig(epochs=cfg.m2_epochs, batch_size=100, seed=draw, device="cpu"))
        xg, yg = augment.class_samples(m2.eval(), acfg.generated_per_class, seed=draw)
        rest = torch.ones(len(train.images), dtype=torch.bool)
        rest[idx] = False
        ys = augment.spread_labels(train.images, train.labels, idx.numpy(),
                                   neighbours=acfg.neighbours)
        added = {"generated": (xg, yg), "self_training": (train.images[rest], ys[rest])}

        def score(kind, w, split):
            xa, ya = added[kind]
            weights = np.r_[np.ones(len(x)), np.full(len(xa), w)]
            held = val if split == "val" else test
            return 100 * augment.classifier_accuracy(torch.cat([x, xa]), torch.cat([y, ya]),
                                                     held.images, held.labels, weights,
                                                     svm_c=acfg.svm_c)

        for kind in added:
            for w in acfg.weights:
                out["val"][f"{kind}_{w}"].append(score(kind, w, "val"))
        out["test"][draw] = (x, y, score)
    # the weight of each kind chosen on val (mean over draws), then test read once
    best = {kind: max(acfg.weights, key=lambda w: np.mean(out["val"][f"{kind}_{w}"]))
            for kind in ("generated", "self_training")}
    for draw, (x, y, score) in out.pop("test").items():
        out["labelled"].append(100 * augment.classifier_accuracy(
            x, y, test.images, test.labels, svm_c=acfg.svm_c))
        for kind, w in best.items():
            out[kind].append(score(kind, w, "test"))
    out["weights"] = best
    return out


def run_anomaly(cfg: BenchConfig) -> dict:
    train, test = mnist("train", source="offline"), mnist("test", source="offline")
    bits = anomaly.complexity_bits(test.images)
    scores: dict[str, list] = {"pca": []}
    for digit in cfg.anomaly_digits:
        keep = train.labels == digit
        _, is_anomaly = anomaly.one_class_split(test.images, test.labels, digit)
        scores["pca"].append(anomaly.auroc(
            anomaly.pca_score(train.images[keep], test.images, cfg.pca_components), is_anomaly))
        for lik in cfg.anomaly_likelihoods:
            vae = _fit_vae({"x": train.images[keep], "levels": train.levels[keep]},
                           VAEConfig(data_shape=(1, 28, 28), latent_dim=16, hidden=256,
                                     likelihood=lik, num_levels=256),
                           cfg.anomaly_epochs, cfg.seed)
            nll = anomaly.vae_score(vae, test.images, k=cfg.anomaly_k, seed=cfg.seed)
            scores.setdefault(lik, []).append(anomaly.auroc(nll, is_anomaly))
            if lik == "logistic":
                scores.setdefault("logistic_minus_png", []).append(
                    anomaly.auroc(nll / np.log(2) - bits, is_anomaly))
                scores.setdefault("nll_by_class", []).append(
                    [float(nll[(test.labels == c).numpy()].mean()) for c in range(10)])
    return scores


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
    real = extract_features(net, x)
    rows: dict[str, list] = {}
    for mask in masks[:2]:
        draws = inpaint.importance_inpaint(vae, x, mask, k=cfg.inpaint_k, seed=cfg.seed,
                                           draws=cfg.inpaint_draws)
        fills = {"model": inpaint.importance_inpaint(vae, x, mask, k=cfg.inpaint_k,
                                                     seed=cfg.seed),
                 "model_draw": draws[0], "model_draw_mean": draws.mean(0),
                 "nn": inpaint.nearest_neighbour_inpaint(x, mask, pool, k=1),
                 "knn5": inpaint.nearest_neighbour_inpaint(x, mask, pool, k=5),
                 "ridge": inpaint.ridge_inpaint(x, mask, pool),
                 "biharmonic": inpaint.biharmonic_inpaint(x, mask)}
        for name, filled in fills.items():
            rows.setdefault(name, []).append(
                (float(inpaint.masked_psnr(filled, x, mask).mean()), 100 * accuracy(net, filled, y),
                 fid(extract_features(net, filled), real)))
        # a single draw, its accuracy averaged over the draws
        rows.setdefault("model_draw_avg", []).append(
            (float(np.mean([inpaint.masked_psnr(d, x, mask).mean() for d in draws])),
             100 * float(np.mean([accuracy(net, d, y) for d in draws])),
             float(np.mean([fid(extract_features(net, d), real) for d in draws]))))
    # (PSNR dB, accuracy %, FID to the real test digits in the classifier's features)
    return {name: tuple(float(np.mean([r[i] for r in v])) for i in range(3))
            for name, v in rows.items()}


def _timed(part, cfg: BenchConfig):
    torch.set_num_threads(1)
    start = time.process_time()
    result = part(cfg)
    return result, time.process_time() - start


def _paired(a, b) -> tuple[float, float]:
    """Mean of the paired difference a - b and its standard error."""
    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke test)")
    parser.add_argument("--jobs", type=int, default=2, help="parts run in parallel processes")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else BenchConfig()
    parts = (run_anomaly, run_augmentation, run_inpainting)
    if args.jobs > 1:  # the three parts are independent: one process each
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(_timed, part, cfg) for part in parts]
            (ano, t_ano), (aug, t_aug), (inp, t_inp) = [f.result() for f in futures]
    else:
        (ano, t_ano), (aug, t_aug), (inp, t_inp) = [_timed(part, cfg) for part in parts]

    print(f"1. augmentation, 10 labelled digits per class, SVM accuracy (%) on the 447 test "
          f"digits, {cfg.draws} draws; weights chosen on val: {aug['weights']}")
    for name in ("labelled", "generated", "self_training"):
        print(f"  {name:14s} {np.mean(aug[name]):6.2f}  per draw {np.round(aug[name], 2)}")
    gen_minus_lab = _paired(aug["generated"], aug["labelled"])
    self_minus_gen = _paired(aug["self_training"], aug["generated"])
    print(f"  generated - labelled {gen_minus_lab[0]:+.2f} +- {gen_minus_lab[1]:.2f}; "
          f"self_training - generated {self_minus_gen[0]:+.2f} +- {self_minus_gen[1]:.2f}"
          f"  [{t_aug:.0f} s CPU]")

    ano_mean = {k: float(np.mean(v)) for k, v in ano.items() if k != "nll_by_class"}
    print(f"2. anomaly detection, offline MNIST, mean AUROC over digits {list(cfg.anomaly_digits)}")
    for name, value in ano_mean.items():
        print(f"  {name:20s} {value:.4f}  per digit {np.round(ano[name], 3)}")
    print(f"  [{t_ano:.0f} s CPU]")

    print("3. inpainting the hidden half of 447 test digits (bottom, right): PSNR (dB) on "
          "hidden pixels, classifier accuracy (%), FID to the real digits")
    for name, (psnr, acc, dist) in inp.items():
        print(f"  {name:18s} psnr={psnr:6.2f} acc={acc:6.2f} fid={dist:7.3f}")
    print(f"  [{t_inp:.0f} s CPU]")

    figures = {"anomaly_auroc_vae": ano_mean["logistic"],
               "anomaly_auroc_vae_png": ano_mean["logistic_minus_png"],
               "anomaly_auroc_gaussian": ano_mean["gaussian"],
               "anomaly_auroc_bernoulli": ano_mean["bernoulli"],
               "anomaly_auroc_pca": ano_mean["pca"],
               "inpaint_psnr_model": inp["model"][0], "inpaint_psnr_nn": inp["nn"][0],
               "inpaint_acc_model": inp["model"][1], "inpaint_acc_nn": inp["nn"][1],
               "inpaint_psnr_draw": inp["model_draw_avg"][0],
               "inpaint_acc_draw": inp["model_draw_avg"][1],
               "inpaint_psnr_draw_mean": inp["model_draw_mean"][0],
               "inpaint_psnr_knn5": inp["knn5"][0], "inpaint_acc_knn5": inp["knn5"][1],
               "inpaint_fid_model": inp["model"][2], "inpaint_fid_draw": inp["model_draw_avg"][2],
               "inpaint_fid_nn": inp["nn"][2], "inpaint_fid_knn5": inp["knn5"][2],
               "aug_labelled_acc": float(np.mean(aug["labelled"])),
               "aug_generated_acc": float(np.mean(aug["generated"])),
               "self_training_acc": float(np.mean(aug["self_training"])),
               "aug_generated_minus_labelled": gen_minus_lab[0],
               "aug_generated_minus_labelled_se": gen_minus_lab[1],
               "self_training_minus_generated": self_minus_gen[0],
               "self_training_minus_generated_se": self_minus_gen[1],
               "cpu_seconds": t_aug + t_ano + t_inp}
    if not args.quick:
        results_file.write(
            "applications", figures, seeds=list(range(cfg.draws)),
            budget=(f"M2 {cfg.m2_epochs} epochs x {cfg.draws} draws; one-class VAEs "
                    f"{cfg.anomaly_epochs} epochs x {len(cfg.anomaly_digits)} digits x "
                    f"{len(cfg.anomaly_likelihoods)} likelihoods, IWAE k={cfg.anomaly_k}; "
                    f"mask-trained VAE {cfg.inpaint_epochs} epochs, k={cfg.inpaint_k}"),
            extra={"per_draw": {k: aug[k] for k in ("labelled", "generated", "self_training")},
                   "aug_val": aug["val"], "aug_weights": aug["weights"],
                   "anomaly_per_digit": {k: v for k, v in ano.items()},
                   "inpaint": inp})
    def shown(keys):
        return " ".join(f"{k}={figures[k]:.4f}" if "auroc" in k else f"{k}={figures[k]:.2f}"
                        for k in keys)

    print("also:", shown([k for k in figures if k not in KEYS]))
    print(shown(KEYS))  # the last line: exactly the keys
    return figures


if __name__ == "__main__":
    main()
