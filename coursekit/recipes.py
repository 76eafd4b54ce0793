"""One table of named recipes: which model, its settings, its training settings and its data
(Chapter 4 for the command line; each chapter names the recipe it runs).

A recipe is plain data (importing this module does not import torch, so ``--help`` reads the
table fast); ``build(name, seed)`` turns one into a ready model, its ``TrainConfig`` and its
prepared training and validation data, the way ``python -m coursekit train NAME`` does:

    >>> from coursekit.recipes import build
    >>> run = build("vae", seed=0)
    >>> type(run.model).__name__, run.config.lr, run.model.config.latent_dim
    ('VAE', 0.001, 16)

``build_model(name, dataset)`` sizes the image models for a given dataset (the benchmarks use it
with their own data). The chapters' larger settings are recipes too (``m2``: Chapter 6's
classifier; ``gpt``: Chapter 7's; ``vae-best``: the digits benchmark's causal-conv VAE).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Recipe", "RECIPES", "Run", "build", "build_model", "prepare_data"]

NUM_CLASSES = 10  # the labelled datasets (digits, mnist) are the ten digits


@dataclass(frozen=True)
class Recipe:
    model: str                     # the model class, as registered (coursekit.models.base)
    help: str                      # one line for --help
    config: dict = field(default_factory=dict)  # the model config's fields (the data's shape
    #                                             and levels are filled in from the data)
    train: dict = field(default_factory=dict)   # TrainConfig fields (lr, betas, epochs, ...)
    data: str = "digits"           # the data it trains on ("text" for the GPT)
    labels: bool = False           # needs labelled images
    images: bool = True            # trains on any image dataset (--data)

    # the fields the command line and the benchmarks read
    @property
    def lr(self) -> float:
        return self.train.get("lr", 1e-3)

    @property
    def betas(self) -> tuple[float, float]:
        return tuple(self.train.get("betas", (0.9, 0.999)))

    @property
    def latent_dim(self) -> int:
        return self.config.get("latent_dim", 0)

    @property
    def family(self) -> str:
        return self.model


_GAN = {"lr": 2e-4, "betas": (0.5, 0.999)}
RECIPES: dict[str, Recipe] = {
    "vae": Recipe("VAE", "MLP VAE (Kingma and Welling 2014)", {"latent_dim": 16}),
    "conv-vae": Recipe("VAE", "convolutional VAE", {"latent_dim": 16, "arch": "conv"}),
    "cvae": Recipe("VAE", "class-conditional MLP VAE (Sohn et al. 2015)",
                   {"latent_dim": 16, "num_classes": NUM_CLASSES}, labels=True),
    "vae-best": Recipe("VAE", "the digits benchmark's VAE: causal-conv autoregressive decoder, "
                       "cosine decay over 250 epochs", {"latent_dim": 16, "hidden": 256,
                                                         "autoregressive": True,
                                                         "ar_decoder": "causal_conv",
                                                         "channels": 64, "dropout": 0.1},
                       {"lr": 1e-3, "lr_schedule": "cosine", "epochs": 250}),
    "gan": Recipe("GAN", "MLP GAN, non-saturating loss (Goodfellow et al. 2014)",
                  {"latent_dim": 32, "arch": "mlp"}, _GAN),
    "dcgan": Recipe("GAN", "DCGAN-style GAN (Radford et al. 2016)",
                    {"latent_dim": 32, "arch": "dcgan"}, _GAN),
    "wgan-gp": Recipe("GAN", "DCGAN-style critic with the WGAN-GP loss (Gulrajani et al. 2017)",
                      {"latent_dim": 32, "arch": "dcgan", "loss": "wgan",
                       "gradient_penalty": 10.0, "n_critic": 5},
                      {"lr": 1e-4, "betas": (0.0, 0.9)}),
    "cgan": Recipe("GAN", "class-conditional MLP GAN with a projection critic",
                   {"latent_dim": 32, "arch": "mlp", "num_classes": NUM_CLASSES}, _GAN,
                   labels=True),
    "ddpm": Recipe("Diffusion", "diffusion model, v-prediction, DDIM sampling (Ho et al. 2020)",
                   {"objective": "v", "hidden": 256}, {"lr": 2e-3}),
    "flow": Recipe("Diffusion", "flow matching / rectified flow, Euler sampling (Lipman et al. "
                   "2023)", {"objective": "flow", "hidden": 256}, {"lr": 2e-3}),
    # Chapter 11: exact likelihoods (the settings of benchmarks/exact_likelihood.py)
    "realnvp": Recipe("Flow", "RealNVP coupling flow, variational dequantisation (Dinh et al. "
                      "2017; Ho et al. 2019; Chapter 11)", {"dequantization": "variational"}),
    "autoregressive": Recipe("Autoregressive", "autoregressive model, causal convolutions in "
                             "raster order (Chapter 11)", {"arch": "causal_conv"}),
    "m2": Recipe("M2", "semi-supervised VAE M2 (Kingma et al. 2014), 10 labels per class "
                 "(Chapter 6)", {"latent_dim": 16, "classifier": "conv", "consistency": 3.0,
                                 "dropout": 0.3, "alpha": 10.0},
                 {"batch_size": 100, "epochs": 12}, labels=True),
    "attribute-vae": Recipe("AttributeVAE", "VAE conditioned on the seven-segment code of each "
                            "digit (Chapter 6's zero-shot model)", {"latent_dim": 8},
                            {"epochs": 15}, labels=True),
    "contrastive": Recipe("ContrastiveEncoder", "SimCLR encoder, InfoNCE loss (Chen et al. "
                          "2020; Chapter 6)", {}, {"epochs": 60, "batch_size": 256}),
    "gpt": Recipe("GPT", "character GPT on the offline English text (Chapter 7)",
                  {"block_size": 64, "n_layer": 2, "n_head": 4, "n_embd": 128},
                  {"epochs": 3, "batch_size": 32, "lr": 3e-3, "grad_clip": 1.0,
                   "drop_last": True}, data="text", images=False),
    "vqvae": Recipe("VQVAE", "VQ-VAE (van den Oord et al. 2017), then a class-conditional GPT "
                    "prior over its codes, saved as prior.pt (Chapter 12)",
                    {"codebook_size": 64, "code_dim": 16, "hidden": 64},
                    {"lr": 2e-3, "epochs": 12}, data="mnist", labels=True),
}


@dataclass
class Run:
    """What ``build`` returns: ready to ``fit(run.model, run.train, run.config,
    val_data=run.val)``."""

    model: Any           # the model, its weights drawn under ``seed``
    config: Any          # its TrainConfig
    train: Any           # the training data, as fit takes it
    val: Any             # the validation data (None: the model has no evaluate)
    source: str          # where the data came from, in words
    extra: dict = field(default_factory=dict)   # what sampling needs (the GPT's tokenizer)


def _recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


def build_model(name: str, dataset, latent_dim: int | None = None, beta: float = 1.0,
                **overrides):
    """The image model of recipe ``name`` sized for ``dataset`` (an ``ImageDataset``): the
    digits use the 17-level categorical likelihood, other data the Bernoulli cross-entropy on
    grey values. ``latent_dim``, ``beta`` (VAEs) and ``overrides`` change the recipe's config."""
    from coursekit.models.base import model_class

    recipe = _recipe(name)
    if not recipe.images:
        raise ValueError(f"{name} does not train on images")
    if recipe.labels and dataset.labels is None:
        raise ValueError(f"{name} needs labelled data; {dataset.name} has no labels "
                         f"(labelled: digits, mnist)")
    cls, config_cls = model_class(recipe.model)
    fields = {**recipe.config, "data_shape": tuple(dataset.images.shape[1:]), **overrides}
    if latent_dim and "latent_dim" in fields:
        fields["latent_dim"] = latent_dim
    categorical = dataset.name == "digits"
    if recipe.model in ("VAE", "M2"):
        fields.setdefault("likelihood", "categorical" if categorical else "bernoulli")
        fields.setdefault("num_levels", dataset.num_levels if categorical else 17)
    if recipe.model == "VAE":
        fields["beta"] = beta
    if recipe.model in ("Diffusion", "AttributeVAE", "Flow", "Autoregressive") \
            and dataset.num_levels:
        fields.setdefault("num_levels", dataset.num_levels)
    if recipe.model == "ContrastiveEncoder":
        fields.pop("num_levels", None)
    if recipe.model == "VQVAE" and min(fields["data_shape"][1:]) < 16:
        fields.setdefault("downsample", 1)  # 8x8 digits: a 4x4 grid of codes
    return cls(config_cls(**fields))


def prepare_data(name: str, data: str | None = None, seed: int = 0):
    """``(train, val, source, extra)`` of recipe ``name`` on dataset ``data`` (its default
    when None), in the form ``fit`` takes."""
    from coursekit import data as datasets

    recipe = _recipe(name)
    data = data or recipe.data
    if recipe.model == "GPT":
        from coursekit.models.gpt import make_windows
        from coursekit.text.recipes import char_splits
        from coursekit.text.tokenize import CharTokenizer

        splits = char_splits()
        tok = CharTokenizer.from_text(splits["train"] + splits["dev"])
        block = recipe.config["block_size"]
        train = make_windows(tok.encode(splits["train"]), block, stride=block)   # (N, T + 1)
        val = make_windows(tok.encode(splits["dev"]), block, stride=block)
        return train, val, "CPython's pydoc topics (coursekit.data.text)", {"tokenizer": tok}
    if data not in datasets.IMAGE_DATASETS:
        raise ValueError(f"{name} trains on images: --data is one of "
                         f"{', '.join(datasets.IMAGE_DATASETS)}, got {data!r}")
    train = datasets.load(data, "train")
    val = datasets.load(data, datasets.HELD_OUT_SPLIT[data])
    if recipe.labels and train.labels is None:
        raise ValueError(f"{name} needs labelled data; {data} has no labels "
                         f"(labelled: digits, mnist)")
    if recipe.model == "M2":
        from coursekit.fewlabels import semi_supervised_data

        index = datasets.draw_labelled(train.labels, 10, seed, NUM_CLASSES)
        return (semi_supervised_data(train.images, train.labels, index, NUM_CLASSES,
                                     train.levels), _as_dict(val), train.source, {})
    if recipe.model == "AttributeVAE":
        import torch

        from coursekit.zeroshot import SEVEN_SEGMENT

        codes = torch.tensor(SEVEN_SEGMENT, dtype=torch.float32)
        return ({**_as_dict(train), "a": codes[train.labels]},
                {**_as_dict(val), "a": codes[val.labels]}, train.source, {})
    if recipe.model == "ContrastiveEncoder":
        return train.images, None, train.source, {}
    return train, val, train.source, {}


def _as_dict(dataset) -> dict:
    out = {"x": dataset.images, "y": dataset.labels}
    if dataset.levels is not None:
        out["levels"] = dataset.levels
    return out


def build(name: str, seed: int = 0, *, data: str | None = None, latent_dim: int | None = None,
          beta: float = 1.0, **train_overrides) -> Run:
    """Recipe ``name`` made real: its data, its model (weights drawn under ``seed``) and its
    ``TrainConfig`` (``train_overrides`` change any of its fields, for example ``epochs``)."""
    from coursekit.models.base import model_class
    from coursekit.seed import seed_everything
    from coursekit.train import TrainConfig

    recipe = _recipe(name)
    train, val, source, extra = prepare_data(name, data, seed)
    seed_everything(seed)  # the initial weights
    if recipe.model == "GPT":
        cls, config_cls = model_class("GPT")
        model = cls(config_cls(vocab_size=extra["tokenizer"].vocab_size, **recipe.config))
    else:
        from coursekit import data as datasets

        images = train if hasattr(train, "images") else datasets.load(data or recipe.data,
                                                                       "train")
        model = build_model(name, images, latent_dim, beta)
    settings = {**recipe.train, **{k: v for k, v in train_overrides.items() if v is not None}}
    config = replace(TrainConfig(), seed=seed, **settings)
    if not hasattr(model, "evaluate"):
        val = None
    return Run(model, config, train, val, source, extra)
