"""Reference generative models the chapters train: GANs and VAEs (Chapters 2-4), diffusion and
flow matching (Chapter 9).

Each model is a readable ``nn.Module`` built from a dataclass config, works for any of the course's
image sizes (8x8 digits, 28x28 MNIST, 25x25 faces, RGB crops) and for flat vectors (the 2-D toy
data of Chapter 4), and speaks the small protocol of the training engine (``coursekit.train``):
``phases(step)``, ``parameter_groups()``, ``loss(phase, batch, step)`` and ``evaluate(batch)``.
"""

from coursekit.models.diffusion import Diffusion, DiffusionConfig
from coursekit.models.gan import GAN, Discriminator, GANConfig, Generator
from coursekit.models.vae import VAE, VAEConfig
from coursekit.models.gpt import GPT, GPTConfig

# The model families a checkpoint can name, with their config classes, so that a saved run can be
# rebuilt from its config.
MODEL_CLASSES = {"GAN": (GAN, GANConfig), "VAE": (VAE, VAEConfig),
                 "Diffusion": (Diffusion, DiffusionConfig), "GPT": (GPT, GPTConfig)}

__all__ = ["GAN", "GANConfig", "Generator", "Discriminator", "VAE", "VAEConfig", "MODEL_CLASSES",
           "Diffusion", "DiffusionConfig", "GPT", "GPTConfig"]
