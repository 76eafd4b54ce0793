"""pytest settings for the whole repository: the docstring examples of ``coursekit`` run as tests
(``--doctest-modules``, see pyproject.toml), each from the same seed."""

import os

import pytest

os.environ.setdefault("COURSEKIT_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seeded_doctests(request):
    """Seed ``random``, NumPy and torch before every docstring example, so that an example's
    printed numbers do not depend on which tests ran before it."""
    from _pytest.doctest import DoctestItem

    if isinstance(request.node, DoctestItem):
        from coursekit.seed import seed_everything

        seed_everything(0)
    yield
