"""Shared test settings: offline, headless, and the repository's root folder."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("COURSEKIT_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
