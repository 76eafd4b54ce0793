"""The docstring examples run as tests through ``--doctest-modules`` (pyproject.toml, seeded by
the root conftest.py); this test makes sure every module of the package still has examples, so
that deleting every example of a module cannot pass unnoticed. The module list is derived from
the package: a new module is covered unless it is named below with the reason it has none."""

import doctest
import importlib
import pkgutil

import pytest

import coursekit

# modules without examples, and why: they act on processes, files or the command line, which
# their own tests exercise; or they hold only tables or building blocks of a tested whole
WITHOUT_EXAMPLES = {
    "coursekit.__main__": "the command line (tests/test_cli_train.py)",
    "coursekit.runs": "the train and sample commands (tests/test_cli_train.py)",
    "coursekit.text.ask": "the ask command (tests/test_helpdesk.py)",
    "coursekit.distributed": "needs several processes (tests/test_train_distributed.py)",
    "coursekit.notebooks": "rewrites notebook files (tests/test_notebooks.py)",
    "coursekit.results": "reads and writes result files (tests/test_quoted_figures.py)",
    "coursekit.data.names": "name tables only",
    "coursekit.metrics._base": "the metric classes' private base (tests/test_metrics_*.py)",
    "coursekit.models.layers": "layers tested through the models (tests/test_models.py)",
    "coursekit.grader.drivers": "runs notebooks in a sandbox (tests/test_grader*.py)",
    "coursekit.grader.sandbox": "starts sandboxed processes (tests/test_grader_sandbox.py)",
    "coursekit.grader.worker": "the sandbox's worker process (tests/test_grader*.py)",
    "coursekit.grader.__main__": "the command line (tests/test_grader_instructor.py)",
    "coursekit.grader.commands": "the grade subcommands (tests/test_grader_instructor.py)",
    "coursekit.grader.instructor": "keeps a class's files in OUT (tests/test_grader_instructor*.py)",
    "coursekit.grader.refcache": "reads and writes cache files (tests/test_grader_instructor.py)",
    "coursekit.grader.report": "writes the class report (tests/test_grader_instructor*.py)",
}


def _modules() -> list[str]:
    """Every module of the package that is not a package's ``__init__`` (those re-export)."""
    return sorted(m.name for m in pkgutil.walk_packages(coursekit.__path__, "coursekit.")
                  if not m.ispkg)


def test_the_list_is_derived_and_the_exemptions_exist():
    modules = _modules()
    assert len(modules) > 40 and "coursekit.models.vae" in modules
    assert set(WITHOUT_EXAMPLES) - {"coursekit.__main__"} <= set(modules)


@pytest.mark.parametrize("name", [m for m in _modules() if m not in WITHOUT_EXAMPLES])
def test_module_has_docstring_examples(name):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module)
    assert sum(len(t.examples) for t in tests if t.name.startswith(name)) > 0


def test_pytest_collects_the_examples(request):
    assert request.config.getoption("doctestmodules")  # pyproject.toml's addopts
    assert "coursekit" in request.config.getini("testpaths")
