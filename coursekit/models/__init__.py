"""Reference generative models the chapters train: GANs and VAEs (Chapters 2-4), the
semi-supervised M2 (Chapter 6), the character GPT (Chapter 7), and diffusion and flow matching
(Chapter 9), and the exact-likelihood models: a coupling flow and an autoregressive model
(Chapter 11).

Each model is a readable ``nn.Module`` built from a dataclass config, subclasses
``base.TrainableModel`` (the protocol of the training engine ``coursekit.train``: it writes
``objective(batch, step)``, and the generative ones ``sample(n, *, labels=None, generator=None)``)
and scores pixels through a ``likelihoods`` object. The feature network of Chapter 5's metrics
(``feature_net``) lives here too. The image models work for any of the
course's image sizes (8x8 digits, 28x28 MNIST, 25x25 faces, RGB crops) and for flat vectors (the
2-D toy data of Chapter 4).
"""

from coursekit.models.attribute_vae import AttributeVAE, AttributeVAEConfig
from coursekit.models.base import MODEL_REGISTRY, TrainableModel, model_class
from coursekit.models.autoregressive import Autoregressive, AutoregressiveConfig
from coursekit.models.contrastive import ContrastiveConfig, ContrastiveEncoder
from coursekit.models.diffusion import Diffusion, DiffusionConfig
from coursekit.models.feature_net import (FeatureClassifier, FeatureClassifierConfig, FeatureNet,
                                          FeatureNetConfig)
from coursekit.models.flow import Flow, FlowConfig
from coursekit.models.gan import GAN, Discriminator, GANConfig, Generator
from coursekit.models.gpt import GPT, GPTConfig
from coursekit.models.m2 import M2, M2Config
from coursekit.models.likelihoods import LIKELIHOODS, PixelLikelihood, likelihood
from coursekit.models.vae import VAE, VAEConfig
from coursekit.models.vqvae import VQVAE, VQVAEConfig

# Every TrainableModel subclass registers itself (name -> (class, config class)), so that a saved
# run of any model can be rebuilt from its config (coursekit.train.load_model).
MODEL_CLASSES = MODEL_REGISTRY

__all__ = ["GAN", "GANConfig", "Generator", "Discriminator", "VAE", "VAEConfig", "M2", "M2Config",
           "GPT", "GPTConfig", "Diffusion", "DiffusionConfig", "VQVAE", "VQVAEConfig",
           "MODEL_CLASSES",
           "MODEL_REGISTRY", "TrainableModel", "model_class", "FeatureNet", "FeatureNetConfig",
           "FeatureClassifier", "FeatureClassifierConfig", "LIKELIHOODS", "PixelLikelihood",
           "likelihood", "Flow", "FlowConfig", "Autoregressive", "AutoregressiveConfig",
           "ContrastiveEncoder", "ContrastiveConfig", "AttributeVAE", "AttributeVAEConfig"]
