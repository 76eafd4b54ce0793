"""The course's models on a GPU: throughput, peak memory and agreement with the CPU (Chapter 4).

Trains the DCGAN (offline MNIST, 28x28) and the course's best VAE (digits, autoregressive causal
convolution decoder, as in ``benchmarks/vae_digits.py``) through ``coursekit.train.fit`` for a
fixed number of epochs in four settings each: float32 or mixed precision (bfloat16 autocast, or
float16 with a loss scaler where bfloat16 is missing), each without and with ``torch.compile``.
Prints images per second (the median of the epochs after the first, so compilation is not
counted), the peak GPU memory, and the relative difference between the CPU's and the GPU's
losses at the first step (same weights, same batch, same noise drawn on the CPU; dropout and
batch-norm statistics in eval mode, so only the arithmetic differs). Designed to finish in under
8 minutes on one GPU; it stops starting new settings after ``--budget`` seconds.

    python benchmarks/gpu.py [--epochs 6] [--batch-size 256] [--no-compile] [--budget 420]

Without CUDA it says so and exits 0. The last line is
``dcgan_fp32_images_per_s=... dcgan_amp_images_per_s=... vae_fp32_images_per_s=...
vae_amp_images_per_s=... max_first_step_rel_diff_fp32=... max_first_step_rel_diff_amp=...``
(the best of eager and compiled for the throughputs).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time

import torch

from coursekit.data import load
from coursekit.device import amp_dtype
from coursekit.models import VAE, VAEConfig
from coursekit.runs import PRESETS, build_model
from coursekit.seed import seed_everything
from coursekit.train import TrainConfig, as_batch_data, fit


def _models():
    """``{name: (model, data, lr, betas)}``: the DCGAN of the command line and the best VAE."""
    seed_everything(0)
    mnist = load("mnist", "train", source="offline")
    dcgan = build_model("dcgan", mnist)
    seed_everything(0)
    vae = VAE(VAEConfig(latent_dim=16, hidden=256, autoregressive=True, ar_decoder="causal_conv",
                        channels=64, dropout=0.1))
    preset = PRESETS["dcgan"]
    return {"dcgan": (dcgan, mnist, preset.lr, preset.betas),
            "vae": (vae, load("digits", "train"), 1e-3, (0.9, 0.999))}


@contextlib.contextmanager
def _noise_from_the_cpu():
    """``torch.randn``/``randn_like`` draw on the CPU and move to the asked device, so that the
    CPU and the GPU see the same z and the same reparameterisation noise."""
    randn, randn_like = torch.randn, torch.randn_like

    def cpu_randn(*size, device=None, dtype=None, **kw):
        return randn(*size, dtype=dtype, **kw).to(device if device is not None else "cpu")

    def cpu_randn_like(t, **kw):
        return randn(t.shape, dtype=t.dtype).to(t.device)

    torch.randn, torch.randn_like = cpu_randn, cpu_randn_like
    try:
        yield
    finally:
        torch.randn, torch.randn_like = randn, randn_like


def first_step_losses(model, data, device, amp: bool, batch_size: int) -> dict[str, float]:
    """Each phase's loss at step 0 on the first ``batch_size`` examples, on ``device``."""
    model = copy.deepcopy(model).to(device).eval()
    batch = {k: t[:batch_size] for k, t in as_batch_data(data, device).items()}
    dtype = amp_dtype(device) if amp else None
    out = {}
    for phase in model.phases(0) + tuple(p for p in model.parameter_groups()
                                          if p not in model.phases(0)):
        torch.manual_seed(0)
        with _noise_from_the_cpu(), torch.no_grad(), \
                torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = model.loss(phase, batch, 0)
        out[phase] = float(loss.float())
    return out


def throughput(model, data, lr, betas, device, amp: bool, compile_: bool, epochs: int,
               batch_size: int) -> tuple[float, float, float]:
    """(images per second, peak memory in GiB, seconds) of a short run from the given weights."""
    model = copy.deepcopy(model)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    history = fit(model, data, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                                           betas=betas, device=str(device), amp=amp,
                                           compile=compile_, drop_last=True)).history
    seconds = time.perf_counter() - start
    rate = statistics.median(history.images_per_second[1:] or history.images_per_second)
    return rate, torch.cuda.max_memory_allocated(device) / 2**30, seconds


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per setting (default 6)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size (default 256)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="start no new setting after this many seconds (default 420)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device on this machine (torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda}); nothing to measure. "
              "Run it on a machine with an NVIDIA GPU.")
        return 0
    start = time.perf_counter()
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}; mixed precision = "
          f"{amp_dtype(device)}; float32 matmuls at precision "
          f"'{torch.get_float32_matmul_precision()}'")
    results, diffs = {}, {"fp32": [], "amp": []}
    for name, (model, data, lr, betas) in _models().items():
        cpu = first_step_losses(model, data, torch.device("cpu"), False, args.batch_size)
        for precision, amp in (("fp32", False), ("amp", True)):
            gpu = first_step_losses(model, data, device, amp, args.batch_size)
            for phase in cpu:
                diffs[precision].append(_rel(gpu[phase], cpu[phase]))
                print(f"{name} first-step {phase} loss: CPU fp32 {cpu[phase]:.6f}, GPU "
                      f"{precision} {gpu[phase]:.6f}, relative difference "
                      f"{diffs[precision][-1]:.2e}")
        for precision, amp in (("fp32", False), ("amp", True)):
            for compile_ in (False,) if args.no_compile else (False, True):
                label = f"{name} {precision}{' compiled' if compile_ else ''}"
                if time.perf_counter() - start > args.budget:
                    print(f"{label}: skipped, past the {args.budget:.0f} s budget")
                    continue
                rate, peak, seconds = throughput(model, data, lr, betas, device, amp, compile_,
                                                 args.epochs, args.batch_size)
                results[(name, precision, compile_)] = rate
                print(f"{label:24s} {rate:12,.0f} images/s  peak {peak:6.3f} GiB  "
                      f"({seconds:.1f} s for {args.epochs} epochs)")
    print(f"total {time.perf_counter() - start:.0f} s")

    def best(name, precision):
        rates = [r for (n, p, _), r in results.items() if n == name and p == precision]
        return f"{max(rates):.0f}" if rates else "nan"

    print(" ".join([f"{n}_{p}_images_per_s={best(n, p)}" for n in ("dcgan", "vae")
                    for p in ("fp32", "amp")]
                   + [f"max_first_step_rel_diff_{p}={max(d):.2e}" for p, d in diffs.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
