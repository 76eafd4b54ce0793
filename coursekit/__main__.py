"""The course's command line: ``python -m coursekit COMMAND ...`` (``--help`` lists the commands).

Each command lives in its own module, which provides ``configure(parser)`` to declare its options
and ``run(args) -> int`` to do the work; this file only dispatches, so importing it does nothing.
Only the command named on the line is configured (its module imported), so ``--help`` and
``train --help`` answer without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module that implements it, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("coursekit.runs", "train any model of the course by its recipe name (VAEs, GANs, "
              "diffusion, M2, GPT, ...); writes checkpoint, metrics, PNGs"),
    "sample": ("coursekit.runs", "draw samples from a run written by 'train' into a PNG grid "
               "(text for the GPT)"),
    "assign": ("coursekit.grader.assign", "write the exercise notebooks from the solutions"),
    "grade": ("coursekit.grader.grade", "grade submitted exercise notebooks in sandboxes"),
    "features": ("coursekit.features", "train the feature networks of FID/KID/precision-recall"),
    "ask": ("coursekit.text.ask", "ask the Python help desk a question (Chapter 7)"),
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def _chosen(argv: list[str]) -> str | None:
    """The command named on the line (the first argument that is not an option), if any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command chosen in ``argv`` is configured (all of them when
    ``argv`` is None)."""
    from coursekit import __version__

    parser = _Parser(prog="python -m coursekit",
                     description="Train, sample, build exercises and grade for the course.")
    parser.add_argument("--version", action="version", version=f"coursekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(command=name)  # a module serving two commands asks which
        if argv is None or name == _chosen(argv):
            importlib.import_module(module).configure(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args, extras = parser.parse_known_args(argv)
    if extras:  # the same error for every command, naming it and where its options are
        parser.error(f"unrecognized arguments for '{args.command}': {' '.join(extras)} (see "
                     f"python -m coursekit {args.command} --help)")
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
