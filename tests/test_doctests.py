"""The docstring examples run as tests through ``--doctest-modules`` (pyproject.toml, seeded by
the root conftest.py); this test makes sure the modules that promise examples still have them,
so that deleting every example of a module cannot pass unnoticed."""

import doctest
import importlib

import pytest

MODULES = ["coursekit.device", "coursekit.seed", "coursekit.plotting", "coursekit.data",
           "coursekit.utils", "coursekit.train", "coursekit.losses", "coursekit.features",
           "coursekit.cleaning", "coursekit.mixture", "coursekit.models.gan",
           "coursekit.models.vae", "coursekit.metrics.image", "coursekit.metrics.distribution",
           "coursekit.metrics.likelihood", "coursekit.metrics.text", "coursekit.grader.assign",
           "coursekit.grader.grade", "coursekit.grader.gradebook", "coursekit.grader.protocol",
           "coursekit.grader.similarity", "coursekit.grader.tasks", "coursekit.grader.toc"]


@pytest.mark.parametrize("name", MODULES)
def test_module_has_docstring_examples(name):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module)
    assert sum(len(t.examples) for t in tests if t.name.startswith(name)) > 0


def test_pytest_collects_the_examples(request):
    assert request.config.getoption("doctestmodules")  # pyproject.toml's addopts
    assert "coursekit" in request.config.getini("testpaths")
