"""Choosing where tensors live and which precision the training loop may use (intro, Chapter 4).

One helper serves the whole course: ``get_device("auto")`` picks CUDA, then Apple's MPS, then the
CPU, and an explicit name is honoured or refused with a message that says what *is* available.
Mixed precision is decided here but applied only inside the training loop (``coursekit.train``).
"""

from __future__ import annotations

import torch

__all__ = ["available_devices", "get_device", "amp_dtype", "DeviceUnavailableError"]


class DeviceUnavailableError(ValueError):
    """A device name that is not a device, or names one this machine does not have."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Names of the devices this machine can use, best first (always ends with ``"cpu"``)."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def get_device(name: str | torch.device = "auto") -> torch.device:
    """Return the device to compute on.

    Args:
        name: ``"auto"`` (CUDA, then MPS, then CPU), or an explicit device such as ``"cpu"``,
            ``"cuda"``, ``"cuda:1"`` or ``"mps"``. An explicit device that this machine lacks is
            refused; nothing silently falls back.

    Returns:
        The chosen ``torch.device``.

    Raises:
        DeviceUnavailableError: ``name`` is not a device name, or names a device this machine
            does not have (a ``ValueError``).

    Example:
        >>> get_device("cpu")
        device(type='cpu')
    """
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise DeviceUnavailableError(f"device must be a string such as 'auto', 'cpu' or 'cuda', "
                                     f"got {name!r}")
    if name == "auto":
        return torch.device(available_devices()[0])
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceUnavailableError(
            f"unknown device {name!r}: use 'auto' or one of {available_devices()}") from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if device.index is None else device.index
        if index < count:
            return torch.device("cuda", index)
    elif device.type == "mps" and _mps_available():
        return device
    raise DeviceUnavailableError(
        f"device {name!r} is not available on this machine; available: {available_devices()} "
        f"(or 'auto')")


def amp_dtype(device: str | torch.device) -> torch.dtype | None:
    """The reduced-precision dtype the training loop should autocast to on ``device``.

    bfloat16 on CUDA GPUs that support it (no loss scaling needed), float16 on older CUDA GPUs
    and on MPS (the loop then needs a ``GradScaler``), and ``None`` on the CPU, where small models
    train fastest in float32.

    Example:
        >>> amp_dtype("cpu") is None
        True
    """
    device = get_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None
