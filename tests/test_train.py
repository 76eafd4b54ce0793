"""coursekit.train: loss goes down on digits, determinism, checkpoint round trip, resume
equivalence, refusal of corrupt or mismatched checkpoints, bad data, EMA and callbacks."""

import json
import os

import pytest
import torch

from coursekit.data import digits
from coursekit.models import GAN, VAE, GANConfig, VAEConfig
from coursekit.seed import seed_everything
from coursekit.train import (CheckpointError, EarlyStopping, TrainConfig, fit, load_checkpoint,
                             load_model, save_checkpoint)


@pytest.fixture(scope="module")
def val():
    return digits("val")  # 350 real digits: small enough for many short runs


def _vae(**kw):
    seed_everything(0)
    return VAE(VAEConfig(latent_dim=4, hidden=32, **kw))


def _gan(**kw):
    seed_everything(0)
    return GAN(GANConfig(hidden=32, latent_dim=8, **kw))


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_few_epochs_lower_the_vae_loss_and_history_is_filled(val):
    result = fit(_vae(), val, TrainConfig(epochs=3, batch_size=32, device="cpu"), val_data=val)
    h = result.history
    assert h.epochs == 3 and h.steps == 3 * 11  # 350 / 32: 10 full batches and one of 30
    assert h.losses["neg_elbo"][-1] < h.losses["neg_elbo"][0] - 10
    assert len(h.step_losses["loss"]) == h.steps and len(h.metrics["val_neg_elbo"]) == 3
    assert len(h.images_per_second) == 3 and min(h.images_per_second) > 0
    assert h.wall_seconds >= sum(h.epoch_seconds) > 0 and h.device == "cpu" and h.seed == 0
    json.dumps(h.to_dict())  # the history is plain data


def test_gan_trains_both_players_and_n_critic(val):
    h = fit(_gan(n_critic=2), val, TrainConfig(epochs=1, device="cpu")).history
    assert len(h.step_losses["d_loss"]) == h.steps == 6
    assert len(h.step_losses["g_loss"]) == 3  # the generator moves every second step


def test_same_seed_same_weights_other_seed_differs(val):
    config = TrainConfig(epochs=2, device="cpu", seed=3)
    a = _weights(fit(_gan(), val, config).model)
    b = _weights(fit(_gan(), val, config).model)
    c = _weights(fit(_gan(), val, TrainConfig(epochs=2, device="cpu", seed=4)).model)
    assert _same(a, b) and not _same(a, c)


def test_resume_equals_an_uninterrupted_run(val, tmp_path):
    ckpt = str(tmp_path / "run" / "checkpoint.pt")
    common = dict(device="cpu", ema_decay=0.9, seed=1)
    straight = fit(_gan(spectral_norm=True), val, TrainConfig(epochs=4, **common))
    fit(_gan(spectral_norm=True), val, TrainConfig(epochs=2, checkpoint=ckpt, **common))
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed = fit(_gan(spectral_norm=True), val,
                  TrainConfig(epochs=4, checkpoint=ckpt, resume=True, **common))
    assert _same(_weights(straight.model), _weights(resumed.model))
    assert _same(_weights(straight.ema), _weights(resumed.ema))
    assert straight.history.losses == resumed.history.losses
    assert resumed.history.epochs == 4 and load_checkpoint(ckpt)["epoch"] == 4


def test_checkpoint_round_trip_rebuilds_the_model(val, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    result = fit(_vae(), val, TrainConfig(epochs=1, device="cpu", checkpoint=str(ckpt)))
    model, ema, payload = load_model(ckpt)
    assert type(model) is VAE and ema is None and payload["step"] == result.history.steps
    assert _same(_weights(model), _weights(result.model))
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away


def test_existing_checkpoint_is_never_overwritten_silently(val, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    fit(_vae(), val, TrainConfig(epochs=1, device="cpu", checkpoint=str(ckpt)))
    before = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match="already exists.*resume=True.*overwrite=True"):
        fit(_vae(), val, TrainConfig(epochs=1, device="cpu", checkpoint=str(ckpt)))
    assert ckpt.read_bytes() == before
    fit(_vae(), val, TrainConfig(epochs=1, device="cpu", checkpoint=str(ckpt), overwrite=True))


def test_corrupt_checkpoint_gives_a_clear_error_and_is_kept(val, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    fit(_vae(), val, TrainConfig(epochs=1, device="cpu", checkpoint=str(ckpt)))
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # a truncated write
    damaged = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or not a coursekit checkpoint"):
        fit(_vae(), val, TrainConfig(epochs=2, device="cpu", checkpoint=str(ckpt), resume=True))
    assert ckpt.read_bytes() == damaged
    torch.save({"weights": torch.zeros(1)}, ckpt)
    with pytest.raises(CheckpointError, match="no format marker"):
        load_checkpoint(ckpt)


def test_mismatched_checkpoint_is_refused(val, tmp_path):
    ckpt = str(tmp_path / "checkpoint.pt")
    fit(_vae(), val, TrainConfig(epochs=1, device="cpu", checkpoint=ckpt))
    with pytest.raises(CheckpointError, match=r"different model config \(fields \['beta'\]\)"):
        fit(_vae(beta=2.0), val, TrainConfig(epochs=2, device="cpu", checkpoint=ckpt,
                                             resume=True))
    with pytest.raises(CheckpointError, match=r"different settings \['lr'\]"):
        fit(_vae(), val, TrainConfig(epochs=2, lr=0.1, device="cpu", checkpoint=ckpt,
                                     resume=True))
    with pytest.raises(CheckpointError, match="holds a VAE, not a GAN"):
        fit(_gan(), val, TrainConfig(epochs=2, device="cpu", checkpoint=ckpt, resume=True))


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"a": torch.ones(2)})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"a": Unpicklable()})
    assert torch.equal(torch.load(path)["a"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


def test_nan_in_the_data_is_refused_naming_the_example(val):
    x = val.images.clone()
    x[7, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"data\['x'\] has non-finite.*1 example.*index 7"):
        fit(_vae(), {"x": x}, TrainConfig(epochs=1, device="cpu"))


def test_a_diverging_loss_stops_with_a_clear_error(val):
    model = _vae(likelihood="gaussian")
    with torch.no_grad():
        model.logvar_x.fill_(-200.0)  # a decoder variance of e^-200: the loss overflows
    with pytest.raises(FloatingPointError, match="non-finite in epoch 1"):
        fit(model, val, TrainConfig(epochs=1, device="cpu"))


def test_callbacks_see_each_epoch_can_stop_and_do_not_change_the_run(val):
    seen = []

    def callback(state):
        seen.append(state.epoch)
        torch.rand(1000)  # draws from a forked RNG: the run must not notice
        return state.epoch == 2

    with_cb = fit(_gan(), val, TrainConfig(epochs=5, device="cpu"), callbacks=[callback])
    without = fit(_gan(), val, TrainConfig(epochs=2, device="cpu"))
    assert seen == [1, 2] and with_cb.history.epochs == 2
    assert _same(_weights(with_cb.model), _weights(without.model))


def test_early_stopping_keeps_the_best_weights(val):
    stopper = EarlyStopping("val_neg_elbo", patience=1)
    result = fit(_vae(), val, TrainConfig(epochs=3, device="cpu", lr=0.05), val_data=val,
                 callbacks=[stopper])
    best = min(result.history.metrics["val_neg_elbo"])
    assert stopper.best == best and stopper.best_state is not None
    stopper.restore(result.model)
    with pytest.raises(ValueError, match="watches 'val_fid'"):
        fit(_vae(), val, TrainConfig(epochs=1, device="cpu"), val_data=val,
            callbacks=[EarlyStopping("val_fid")])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.5)
    with pytest.raises(TypeError, match="lacks"):
        fit(torch.nn.Linear(2, 2), torch.zeros(4, 2), TrainConfig(device="cpu"))


def test_cosine_schedule_with_warmup_and_its_resume_is_exact(val, tmp_path):
    ckpt = str(tmp_path / "checkpoint.pt")
    common = dict(device="cpu", lr=1e-2, lr_schedule="cosine", warmup_steps=5, seed=2)
    straight = fit(_vae(), val, TrainConfig(epochs=3, **common))
    fit(_vae(), val, TrainConfig(epochs=1, checkpoint=ckpt, **common))
    resumed = fit(_vae(), val, TrainConfig(epochs=3, checkpoint=ckpt, resume=True, **common))
    assert _same(_weights(straight.model), _weights(resumed.model))
    constant = fit(_vae(), val, TrainConfig(epochs=3, device="cpu", lr=1e-2, seed=2))
    assert not _same(_weights(straight.model), _weights(constant.model))


def test_lr_factor_warms_up_then_follows_a_cosine_to_zero():
    from coursekit.train import _lr_factor

    factor = _lr_factor(TrainConfig(lr_schedule="cosine", warmup_steps=4), total_steps=104)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(54) == pytest.approx(0.5) and factor(103) < 1e-3 and factor(200) == 0.0
    constant = _lr_factor(TrainConfig(warmup_steps=2), total_steps=10)
    assert [constant(s) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown lr_schedule 'step'"):
        TrainConfig(lr_schedule="step")


def test_early_stopping_mode_max_watches_a_metric_where_higher_is_better(val):
    def accuracy_like(state):  # a made-up metric that peaks at epoch 2
        state.history.metrics.setdefault("val_score", []).append([0.5, 0.9, 0.7, 0.6][
            state.epoch - 1])

    stopper = EarlyStopping("val_score", patience=2, mode="max")
    result = fit(_vae(), val, TrainConfig(epochs=6, device="cpu"),
                 callbacks=[accuracy_like, stopper])
    assert stopper.best == 0.9 and stopper.best_epoch == 2 and result.history.epochs == 4
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        EarlyStopping("val_score", mode="higher")


def test_the_vae_checks_its_grey_levels_once_before_training(val):
    bad = {"x": val.images, "levels": val.levels.clone()}
    bad["levels"][3, 0, 0, 0] = 17  # digits have levels 0..16
    with pytest.raises(ValueError, match=r"levels must lie in 0..16, got values from 0 to 17"):
        fit(_vae(), bad, TrainConfig(epochs=1, device="cpu"))


def test_resuming_with_another_number_of_processes_is_refused(val, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    fit(_vae(), val, TrainConfig(epochs=1, device="cpu", checkpoint=str(ckpt)))
    payload = load_checkpoint(ckpt)
    payload["world_size"] = 2
    save_checkpoint(ckpt, payload)
    with pytest.raises(CheckpointError, match=r"written by 2 process\(es\), this run has 1"):
        fit(_vae(), val, TrainConfig(epochs=2, device="cpu", checkpoint=str(ckpt), resume=True))
