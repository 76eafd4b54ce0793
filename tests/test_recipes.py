"""The recipe table: every recipe builds a model that takes a training step and, if generative,
samples through the one signature; ``--help`` never imports torch."""

import subprocess
import sys

import pytest
import torch

from coursekit.recipes import RECIPES, build


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_builds_steps_and_samples(name):
    run = build(name, seed=0, epochs=1)
    model = run.model
    assert run.config.seed == 0 and run.config.epochs == 1
    data = run.train
    if hasattr(data, "images"):  # an ImageDataset
        data = {"x": data.images, "y": data.labels, "levels": data.levels}
    elif torch.is_tensor(data):
        data = {"x": data}
    batch = {k: v[:8] for k, v in data.items() if v is not None}
    model.check_data(batch)
    for phase in model.phases(0):
        loss, logs = model.loss(phase, batch, 0)
        assert loss.ndim == 0 and torch.isfinite(loss), (name, phase, logs)
    with pytest.raises(ValueError, match="unknown phase"):
        model.loss("no-such-phase", batch, 0)
    if model.generative:
        out = model.sample(2, generator=torch.Generator().manual_seed(0))
        assert len(out) == 2
        again = model.sample(2, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out, again)  # the generator seeds the draw


def test_build_seeds_the_initial_weights():
    a, b, c = build("vae", seed=1).model, build("vae", seed=1).model, build("vae", seed=2).model
    wa, wb, wc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown recipe 'vea'; known: vae, conv-vae"):
        build("vea")


def test_help_does_not_import_torch():
    code = ("import sys\nfrom coursekit.__main__ import build_parser\n"
            "for argv in ([], ['train'], ['sample']):\n"
            "    build_parser(argv).format_help()\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
