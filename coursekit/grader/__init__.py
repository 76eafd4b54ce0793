"""Exercises, in-notebook feedback and a grader that student code cannot fool (exercises part).

* :mod:`coursekit.grader.tasks`: how a solution notebook declares its graded tasks, and
  :func:`check`, the feedback students call inside an exercise notebook;
* :mod:`coursekit.grader.protocol`: the one protocol the others share: the task schema on the
  wire, the data format, calling one case, judging one answer, reason codes;
* :mod:`coursekit.grader.assign`: ``python -m coursekit assign`` writes the exercise notebooks
  (solutions replaced by stubs) and their public checks;
* :mod:`coursekit.grader.sandbox` and :mod:`coursekit.grader.worker`: running a notebook's code in
  a bubblewrap sandbox built from an allowlist, which speaks only plain data;
* :mod:`coursekit.grader.grade`: ``python -m coursekit grade``, grading a class in parallel;
  :mod:`coursekit.grader.gradebook` (reports, CSV and LMS exports, feedback files, shards) and
  :mod:`coursekit.grader.similarity` (similar submissions) hold its results.

Importing this package imports nothing heavy; ``check`` loads what it needs when called.
"""

from __future__ import annotations

__all__ = ["check", "summary"]


def check(task_id: str, function):
    """Run task ``task_id``'s public checks on ``function`` and print what they found.

    See :func:`coursekit.grader.tasks.check`, which this calls.
    """
    from coursekit.grader.tasks import check as _check

    return _check(task_id, function)


def summary(exercise: str):
    """Print every task's public checks so far in exercise ``exercise`` (the notebook's last cell).

    See :func:`coursekit.grader.tasks.summary`, which this calls.
    """
    from coursekit.grader.tasks import summary as _summary

    return _summary(exercise)
