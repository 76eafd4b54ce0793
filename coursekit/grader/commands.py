"""``python -m coursekit grade merge|review|report|release``: the grader's subcommands
(exercises part).

* ``grade merge OUT1 OUT2 ... --out OUT``: join the output folders of ``grade --shard K/N`` runs;
* ``grade review OUT [--apply FILE ...]``: write the review pages of the written answers, and
  add the marks saved from them (:mod:`coursekit.grader.review`);
* ``grade report OUT``: rebuild ``OUT`` (grades, exports, ``report.html``) and print the
  class summary;
* ``grade release EXERCISE --roster R --secret FILE --out DIR``: one notebook per student, each
  with its own variant of the exercise (:mod:`coursekit.grader.variants`).

``python -m coursekit grade SUBMISSION ...`` (no subcommand) grades; see
:mod:`coursekit.grader.grade`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["SUBCOMMANDS", "main", "build_parser", "DefaultsHelp"]

SUBCOMMANDS = {
    "merge": "join the output folders of 'grade --shard K/N' runs into one",
    "review": "write the pages to mark written answers; --apply adds the marks saved there",
    "report": "rebuild OUT (grades, exports, report.html) and print the class summary",
    "release": "write one notebook per student with the student's own variant",
}


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse's hook: one line, status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(command: str) -> argparse.ArgumentParser:
    """The parser of ``grade COMMAND``."""
    from coursekit.grader import instructor

    parser = _Parser(prog=f"python -m coursekit grade {command}",
                     description=SUBCOMMANDS[command],
                     formatter_class=DefaultsHelp)
    if command == "merge":
        parser.add_argument("folders", nargs="+", type=Path, metavar="SHARD_OUT",
                            help="the --out folders of the shards")
        parser.add_argument("--out", type=Path, required=True, help="the joined folder")
        parser.add_argument("--roster", type=Path, default=None,
                            help="roster CSV (default: the copy kept in OUT, if any)")
        parser.add_argument("--keep-latest", action="store_true",
                            help="a student with several reports of one exercise: export the "
                                 "latest (default: export none and list them in conflicts.csv)")
        instructor.configure(parser, submitted=False)
    elif command in ("review", "report"):
        parser.add_argument("out", type=Path, metavar="OUT", help="a folder 'grade' wrote")
        if command == "review":
            parser.add_argument("--apply", nargs="+", type=Path, default=[], metavar="FILE",
                                help="marks files saved from the review pages")
    else:
        parser.add_argument("exercise", help="the exercise, such as 01_background")
        parser.add_argument("--roster", type=Path, required=True,
                            help="CSV with columns 'file' and 'student'")
        parser.add_argument("--secret", type=Path, required=True,
                            help="file holding the course secret (never hand it out)")
        parser.add_argument("--out", type=Path, required=True,
                            help="folder for the students' notebooks")
        parser.add_argument("--unsafe", action="store_true",
                            help="run the reference solution without a sandbox where none "
                                 "can be built (it is the course's own code)")
    return parser


def main(argv: list[str]) -> int:
    """Run ``grade COMMAND ...`` (``argv`` starts with the command); return the exit status."""
    command, rest = argv[0], argv[1:]
    args = build_parser(command).parse_args(rest)
    try:
        return _run(command, args)
    except ValueError as error:
        print(f"grade {command}: {error}", file=sys.stderr)
        return 2


def _run(command: str, args) -> int:
    from coursekit.grader import gradebook, instructor

    if command == "merge":
        if args.policy:
            from coursekit.grader.policy import load_policy

            load_policy(args.policy)  # a bad policy stops the merge before anything is written

        def keep(out):  # once merge accepted the shards: settings given here, else theirs
            instructor.remember(out, roster=args.roster, policy=args.policy,
                                task_columns=args.task_columns)
            instructor.inherit(out, args.folders)

        return gradebook.merge(args.folders, args.out, roster=args.roster,
                               keep_latest=args.keep_latest, before_finish=keep)
    if command == "release":
        from coursekit.grader import variants

        return variants.release(args.exercise, args.roster, args.secret, args.out,
                                unsafe=args.unsafe)
    out = args.out
    if not out.is_dir() or not gradebook.read_reports(out):
        raise ValueError(f"{out} holds no grade reports: run python -m coursekit grade first")
    if command == "review":
        from coursekit.grader import review, written

        if args.apply:
            changed = written.add_marks(out, args.apply, gradebook.read_reports(out))
            print(f"added or changed {changed} mark(s) in {out / written.MARKS}")
        reports = gradebook.finish(out)
        pages = review.write_pages(out, reports, written.load_marks(out))
        if not pages:
            print(f"no written answers in {out}")
        for page in pages:
            print(f"review page: {page}")
        waiting = [r for r in reports if r.get("needs_review")]
        print(f"submissions with written answers to mark: {len(waiting)}")
        return 0
    reports = gradebook.finish(out)
    from coursekit.grader.report import summary_lines

    print("\n".join(summary_lines(reports, out)))
    return 0
