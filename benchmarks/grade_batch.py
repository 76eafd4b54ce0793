"""Grade a made-up class of 40 notebooks and print the grader's speed and overhead (exercises part).

The class is built from the solution notebooks (``coursekit.grader.classroom``): for every
exercise, correct, partly correct and wrong notebooks, plus hostile ones (a loop inside a graded
function, a memory bomb, a fork bomb, a segfault, monkeypatching, fake scores, ...). Every
expected score is checked; the script exits 1 if one is wrong.

It prints submissions per minute and the grader's overhead per submission: the wall time of
grading it minus the time its own code ran (cells and graded calls, as measured inside the
sandbox). The target is an overhead of at most 3 s per submission on a 2-core machine.

    OMP_NUM_THREADS=1 python benchmarks/grade_batch.py [--jobs 2] [--timeout 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from coursekit.grader import classroom
    from coursekit.grader.grade import Grader
    from coursekit.grader.sandbox import Limits, isolation
    from coursekit.grader.tasks import exercise_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per submission")
    args = parser.parse_args(argv)

    names = exercise_names()
    hostile = {"loop-function", "memory-function", "kill-self", "segfault", "fork-bomb",
               "fake-score", "monkeypatch", "always-equal", "nan", "escape"}
    submissions = classroom.honest_class(names, copies=2)
    submissions += [s for s in classroom.hostile_class() if s.name in hostile]
    assert len(submissions) == 40, len(submissions)
    grader = Grader(Limits(timeout=args.timeout), jobs=args.jobs)
    print(f"isolation: {isolation()}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = classroom.write(submissions, Path(tmp) / "class")
        grader.hide = [Path(tmp)]
        started = time.monotonic()
        for name in names:
            grader.reference(name)
        reference_seconds = time.monotonic() - started
        started = time.monotonic()
        with ThreadPoolExecutor(args.jobs) as pool:
            reports = list(pool.map(grader.grade, paths))
        batch_seconds = time.monotonic() - started

    wrong = [(s.name, r["score"], s.score) for s, r in zip(submissions, reports)
             if r["score"] != s.score]
    overhead = [r["seconds"] - r.get("student_seconds", 0.0) for r in reports]
    student = [r.get("student_seconds", 0.0) for r in reports]
    print(f"reference solutions of {len(names)} exercises: {reference_seconds:.1f} s (once)")
    print(f"graded {len(reports)} submissions in {batch_seconds:.1f} s with {args.jobs} jobs: "
          f"{60 * len(reports) / batch_seconds:.1f} submissions per minute")
    print(f"student code per submission: mean {statistics.mean(student):.2f} s, "
          f"max {max(student):.2f} s")
    print(f"grader overhead per submission: mean {statistics.mean(overhead):.2f} s, "
          f"median {statistics.median(overhead):.2f} s, max {max(overhead):.2f} s "
          f"(target <= 3 s)")
    print(f"expected scores: {len(reports) - len(wrong)} of {len(reports)} right")
    for name, got, expected in wrong:
        print(f"  WRONG {name}: scored {got}, expected {expected}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
