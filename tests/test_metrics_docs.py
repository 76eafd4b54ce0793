"""The examples in the docstrings of coursekit.metrics and coursekit.features run and are right."""

import doctest
import importlib

import pytest

MODULES = ["coursekit.metrics.image", "coursekit.metrics.distribution",
           "coursekit.metrics.likelihood", "coursekit.metrics.text", "coursekit.features"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
