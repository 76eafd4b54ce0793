"""``python -m coursekit assign``: write the exercise notebooks from the solution notebooks.

For each ``solutions/NN_topic.md`` it writes

* ``exercises/NN_topic.md`` and its paired ``exercises/NN_topic.ipynb``: the solution notebook
  with every block between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` replaced by a stub
  that raises ``NotImplementedError`` (the signature and docstring above the block stay), the
  grading cell and cells tagged ``solution-only`` left out, and ``coursekit: {exercise: NN_topic}``
  in the notebook's metadata (how the grader recognises a submission);
* ``coursekit/grader/public/NN_topic.json``: the public cases of each task with the reference
  solution's answers, which ``check()`` compares against inside the notebook. The answers come
  from running the solution notebook in the grader's sandbox.

``python -m coursekit assign --check`` writes nothing and exits 1, naming the files, when any of
them is out of date with the solutions.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from coursekit.grader.tasks import PUBLIC, ROOT, SOLUTIONS, exercise_names

__all__ = ["configure", "run", "stub_source", "exercise_markdown", "public_checks"]

EXERCISES = ROOT / "exercises"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("replace this line with your code")')


def stub_source(source: str) -> str:
    """``source`` with each solution block replaced by a stub at the block's indentation.

    Raises:
        ValueError: markers that do not pair up (with the line number).

    Example:
        >>> solution = "def f(x):\\n    ### BEGIN SOLUTION\\n    return x\\n    ### END SOLUTION"
        >>> print(stub_source(solution))
        def f(x):
            # YOUR CODE HERE
            raise NotImplementedError("replace this line with your code")
    """
    out, inside = [], False
    for number, line in enumerate(source.splitlines(), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another solution block")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out += [indent + s for s in STUB]
        elif marker == END:
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} is never closed")
    return "\n".join(out)


def exercise_markdown(name: str, solutions: Path = SOLUTIONS) -> str:
    """The MyST text of ``exercises/<name>.md``, made from ``solutions/<name>.md``."""
    import jupytext

    notebook = jupytext.read(Path(solutions) / f"{name}.md")
    cells = []
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code":
            if "grading" in tags or "solution-only" in tags:
                continue
            try:
                cell.source = stub_source(cell.source)
            except ValueError as error:
                raise ValueError(f"solutions/{name}.md: {error}") from None
        elif cell.cell_type == "markdown" and "solution-only" in tags:
            continue
        cells.append(cell)
    from nbformat.v4 import new_markdown_cell

    cells.insert(1, new_markdown_cell(
        f"{{download}}`Download this exercise as a notebook <{name}.ipynb>`, fill in each "
        "function where it says `# YOUR CODE HERE`, and run the `check(...)` cell after it "
        "for feedback. Hand in the notebook: `python -m coursekit grade` grades it."))
    notebook.cells = cells
    notebook.metadata["coursekit"] = {"exercise": name}
    notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,md:myst"
    notebook.metadata["jupytext"]["notebook_metadata_filter"] = "coursekit"
    text = jupytext.writes(notebook, fmt="md:myst")
    # jupytext stamps its own version into the header: leave it out, so that the exercise
    # depends only on the solution
    return re.sub(r"\n +(format_version|jupytext_version): [^\n]*", "", text)


def public_checks(name: str, reference) -> dict:
    """The public cases of exercise ``name`` with the reference answers (plain data)."""
    from coursekit.grader.protocol import public_spec

    tasks = [public_spec(task, [reference.answers[(i, k)] for k, c in enumerate(task.cases)
                                if c.public])
             for i, task in enumerate(reference.exercise.tasks)]
    return {"exercise": name, "generated_by": "python -m coursekit assign",
            "solution_sha256": solution_digest(name), "tasks": tasks}


def solution_digest(name: str, solutions: Path = SOLUTIONS) -> str:
    """SHA-256 of ``solutions/<name>.md``: the public checks record which solution made them."""
    import hashlib

    return hashlib.sha256((Path(solutions) / f"{name}.md").read_bytes()).hexdigest()


def _ipynb_from_md(md: Path) -> bytes:
    """What ``coursekit.notebooks sync`` writes for ``md`` (so the pairing check agrees).

    Like ``sync``, it updates the existing ``.ipynb`` (keeping its cell ids) where there is one.
    """
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / md.name
        shutil.copy(md, copy)
        if md.with_suffix(".ipynb").exists():
            shutil.copy(md.with_suffix(".ipynb"), copy.with_suffix(".ipynb"))
        subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--update",
                        str(copy)], check=True)
        return copy.with_suffix(".ipynb").read_bytes()


def _same_public(a: dict, b: dict) -> bool:
    """Equal, except that floating-point answers may differ in the last bits between machines."""
    from coursekit.grader.tasks import compare
    from coursekit.grader.protocol import decode

    def outline(d):
        return json.dumps({**d, "tasks": [{**t, "cases": len(t["cases"])} for t in d["tasks"]]},
                          sort_keys=True)

    if outline(a) != outline(b):
        return False
    for ta, tb in zip(a["tasks"], b["tasks"]):
        for ca, cb in zip(ta["cases"], tb["cases"]):
            if ca["args"] != cb["args"] or ca["kwargs"] != cb["kwargs"]:
                return False
            if compare(decode(ca["expected"]), decode(cb["expected"]), 1e-6, 1e-9):
                return False
    return True


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else str(path)


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``python -m coursekit assign``."""
    parser.add_argument("names", nargs="*", help="exercises to write (default: all)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the exercises are out of date")
    parser.add_argument("--run", action="store_true",
                        help="with --check: also run the solutions and compare the answers")


def run(args: argparse.Namespace) -> int:
    """Write (or, with ``--check``, compare) the exercises; return the exit status."""
    from coursekit.grader.grade import Grader
    from coursekit.grader.sandbox import Limits

    known = exercise_names()
    names = args.names or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"assign: unknown exercise(s) {unknown}; known: {known}", file=sys.stderr)
        return 2
    grader = Grader(Limits(timeout=300))
    stale = []
    EXERCISES.mkdir(exist_ok=True)
    PUBLIC.mkdir(exist_ok=True)
    for name in names:
        markdown = exercise_markdown(name)
        md, nb = EXERCISES / f"{name}.md", EXERCISES / f"{name}.ipynb"
        public = PUBLIC / f"{name}.json"
        if args.check:
            if not md.exists() or md.read_text(encoding="utf-8") != markdown:
                stale.append(_rel(md))
            elif not nb.exists() or nb.read_bytes() != _ipynb_from_md(md):
                stale.append(_rel(nb))
            # the public answers come from running the solution: they are up to date when they
            # were made from this very solution file (--check --run also runs it and compares)
            recorded = json.loads(public.read_text(encoding="utf-8")) if public.exists() else {}
            if recorded.get("solution_sha256") != solution_digest(name) or (
                    args.run and not _same_public(recorded,
                                                  public_checks(name, grader.reference(name)))):
                stale.append(_rel(public))
            continue
        checks = public_checks(name, grader.reference(name))
        md.write_text(markdown, encoding="utf-8")
        nb.write_bytes(_ipynb_from_md(md))
        public.write_text(json.dumps(checks, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {_rel(md)}, {_rel(nb)}, {_rel(public)}")
    if stale:
        print("out of date with the solutions: " + ", ".join(stale), file=sys.stderr)
        print("run: python -m coursekit assign", file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(names)} exercise(s) up to date")
    return 0
