"""coursekit: the companion package of the course "Generative models, properly".

Small, readable, tested pieces that the chapters import instead of repeating: device and seed
helpers (intro), offline datasets (Chapter 1), and, as the course grows, reference models, one
training engine, evaluation metrics, plotting helpers and the grader. Importing does nothing but
define names.
"""

from coursekit.device import amp_dtype, available_devices, get_device
from coursekit.seed import seed_everything

__version__ = "0.1.0"
__all__ = ["amp_dtype", "available_devices", "get_device", "seed_everything", "__version__"]
