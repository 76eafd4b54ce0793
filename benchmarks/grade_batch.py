"""Grade a made-up class of 40 notebooks and print the grader's speed and overhead
(exercises part).

The class is built from the solution notebooks (``tests/classroom.py``): 30 correct, partly
correct and wrong notebooks of the exercises, plus 10 hostile ones (a loop inside a graded
function, a memory bomb, a fork bomb, a segfault, reading the solutions from another copy on the
machine, a 401-digit integer, a 24 MB answer, text injected into the errors, an error carrying
the hidden inputs, fake scores). Every expected score is checked; the script exits 1 if one is
wrong.

It prints submissions per minute and the grader's overhead per submission: the wall time of
grading it minus the time its own code ran (cells and graded calls, as measured inside the
sandbox), and the grader process's own CPU time and peak memory. The target is an overhead of
at most 3 s per submission (median) on a 2-core machine, with the bubblewrap sandbox. The full
run writes ``benchmarks/results/grade_batch.json``.

A training task runs with the student's own helpers (the exercises say so), so a stubbed or wrong
helper also fails the tasks that call it (their ``uses``): the class fixture's expected scores
follow that rule. ``--small`` grades only the partly correct and wrong notebooks of the
exercises whose tasks call other graded functions (a test runs it, so the rule and the fixture
cannot drift apart), and writes no results.

    OMP_NUM_THREADS=1 python benchmarks/grade_batch.py [--jobs 2] [--timeout 120] [--small]
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
    import resource
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import classroom
    from coursekit.grader.grade import Grader
    from coursekit.grader.sandbox import Limits, isolation
    from coursekit.grader.tasks import SOLUTIONS, exercise_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per submission (the grader's default: exercise 6's "
                             "training task alone takes about 40 CPU-s)")
    parser.add_argument("--small", action="store_true",
                        help="only the partial and wrong notebooks of exercises whose tasks "
                             "call other graded functions; no results written")
    args = parser.parse_args(argv)

    names = exercise_names()
    if args.small:
        from coursekit.grader.tasks import load_exercise

        names = [n for n in names if any(t.uses for t in load_exercise(n).tasks)]
    hostile = {"loop-function", "memory-function", "segfault", "fork-bomb", "read-copies",
               "huge-int", "big-answer", "inject", "hidden-leak", "fake-score"}
    honest = classroom.honest_class(names, copies=2)
    honest = sorted(honest, key=lambda s: (s.name.rsplit("-", 1)[1], s.name))[:30]
    if args.small:
        honest = [s for s in honest if "-correct-" not in s.name]
        hostile = set()
    grader = Grader(Limits(timeout=args.timeout), jobs=args.jobs)
    print(f"isolation: {isolation()}")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        copy = Path(tmp) / "another-clone" / "solutions"  # readable by anyone on the machine
        shutil.copytree(SOLUTIONS, copy)
        for path in [Path(tmp), *Path(tmp).rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        submissions = honest + [s for s in classroom.hostile_class(
            copies=(copy / "01_background.md",)) if s.name in hostile]
        assert args.small or len(submissions) == 40, len(submissions)
        paths = classroom.write(submissions, Path(tmp) / "class")
        started = time.monotonic()
        for name in names:
            grader.reference(name)
        reference_seconds = time.monotonic() - started
        started, cpu = time.monotonic(), time.process_time()
        with ThreadPoolExecutor(args.jobs) as pool:
            reports = list(pool.map(grader.grade, paths))
        batch_seconds = time.monotonic() - started
        grader_cpu = time.process_time() - cpu

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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"grader process: {grader_cpu / len(reports):.2f} CPU s per submission, peak memory "
          f"{peak:.0f} MiB")
    print(f"expected scores: {len(reports) - len(wrong)} of {len(reports)} right")
    for name, got, expected in wrong:
        print(f"  WRONG {name}: scored {got}, expected {expected}")
    figures = {"overhead_median_s": round(statistics.median(overhead), 2),
               "overhead_mean_s": round(statistics.mean(overhead), 2),
               "overhead_max_s": round(max(overhead), 2),
               "grader_cpu_s_per_submission": round(grader_cpu / len(reports), 2),
               "grader_peak_mib": round(peak),
               "submissions_per_minute": round(60 * len(reports) / batch_seconds, 1),
               "scores_right": len(reports) - len(wrong), "submissions": len(reports)}
    if not args.small:
        from coursekit import results

        results.write("grade_batch", figures, seeds=[0], budget=f"{len(reports)} submissions, "
                      f"--jobs {args.jobs}, --timeout {args.timeout:g}",
                      extra={"isolation": isolation(), "wrong": wrong})
    print(f"overhead_median_s={statistics.median(overhead):.2f} "
          f"overhead_mean_s={statistics.mean(overhead):.2f} "
          f"overhead_max_s={max(overhead):.2f} "
          f"grader_cpu_s_per_submission={grader_cpu / len(reports):.2f} "
          f"grader_peak_mib={peak:.0f} "
          f"submissions_per_minute={60 * len(reports) / batch_seconds:.1f} "
          f"scores_right={len(reports) - len(wrong)}/{len(reports)}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
