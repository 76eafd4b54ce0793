"""Applications of generative models, each beside the baseline a practitioner tries first
(Chapter 8): augmenting a small labelled set (``augment``), anomaly detection by likelihood
(``anomaly``) and inpainting (``inpaint``). Import the submodule you need; importing this package
does nothing."""
