"""``python -m coursekit assign``: write the exercise notebooks from the solution notebooks.

For each ``solutions/NN_topic.md`` it writes

* ``exercises/NN_topic.ipynb``, the one file a student opens, downloads and hands in, and the
  page the book renders: the solution notebook with every block between ``### BEGIN SOLUTION``
  and ``### END SOLUTION`` replaced by a stub that raises ``NotImplementedError`` (the signature
  and docstring above the block stay), the grading cell and cells tagged ``solution-only`` left
  out, ``coursekit: {exercise: NN_topic}`` in the notebook's metadata (how the grader recognises a
  submission), the cell that installs ``coursekit`` where it is missing first
  (:func:`coursekit.notebooks.install_cell`) and a cell summing up every task's public checks
  last. MyST's roles are rendered as plain Markdown (``{cite:p}`key``` becomes "(Author et al.,
  2022)"), so the notebook reads clean in JupyterLab. There is no ``.md`` beside it: a second file
  that Jupytext opens as a notebook is one a student could work in by mistake;
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
import sys
from pathlib import Path

from coursekit.grader.tasks import PUBLIC, ROOT, SOLUTIONS, exercise_names
from coursekit.grader.written import PLACEHOLDER, answer_task

__all__ = ["configure", "run", "stub_source", "exercise_markdown", "exercise_notebook",
           "public_checks", "plain_markdown"]

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
    """The exercise as MyST text, made from ``solutions/<name>.md`` (roles not yet rendered)."""
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
        elif answer_task(cell.metadata) is not None:
            cell.source = PLACEHOLDER  # the model answer stays in the solution
        cells.append(cell)
    from nbformat.v4 import new_code_cell, new_markdown_cell

    cells.insert(1, new_markdown_cell(
        "Fill in each function where it says `# YOUR CODE HERE`, and run the `check(...)` cell "
        "after it for feedback; the last cell sums up every task. Hand in this notebook: "
        "`python -m coursekit grade` grades it. (On the book's page, the download button at the "
        "top, `.ipynb`, gives you the notebook.)"))
    cells.append(new_markdown_cell("## Where you stand\n\nEvery task's public checks, as the "
                                   "`check(...)` cells above last ran them."))
    cells.append(new_code_cell(f"from coursekit.grader import summary\n\nsummary({name!r})"))
    notebook.cells = cells
    notebook.metadata["coursekit"] = {"exercise": name}
    notebook.metadata.setdefault("jupytext", {}).pop("formats", None)  # written by assign
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


_ROLE = re.compile(r"\{([a-z:]+)\}`([^`]*)`")


def _bibliography(path: Path = ROOT / "references.bib") -> dict:
    """``{key: (authors, year)}`` from the course's BibTeX file (what citations need)."""
    entries = {}
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    for match in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", text, re.S):
        body = match.group(2)
        author = re.search(r"\bauthor\s*=\s*[{\"](.*?)[}\"],?\s*\n", body, re.S)
        year = re.search(r"\byear\s*=\s*[{\"]?(\d{4})", body)
        names = [a.strip() for a in re.split(r"\s+and\s+", author.group(1))] if author else []
        last = [n.split(",")[0].strip() if "," in n else n.split()[-1] for n in names if n]
        last = [re.sub(r"[{}\\]", "", n) for n in last]
        who = (last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2
               else f"{last[0]} et al." if last else match.group(1))
        entries[match.group(1)] = (who, year.group(1) if year else "n.d.")
    return entries


def plain_markdown(text: str, bibliography: dict) -> str:
    """``text`` with MyST roles rendered as plain Markdown, for a notebook read in JupyterLab.

    Example:
        >>> bib = {"ho2020ddpm": ("Ho et al.", "2020")}
        >>> plain_markdown("DDPM {cite:p}`ho2020ddpm`; {download}`the notebook <a.ipynb>`", bib)
        'DDPM (Ho et al., 2020); [the notebook](a.ipynb)'
    """
    def cite(keys: str, textual: bool) -> str:
        found = [bibliography.get(k.strip(), (k.strip(), "")) for k in keys.split(",")]
        if textual:
            return "; ".join(f"{who} ({year})" if year else who for who, year in found)
        return "(" + "; ".join(f"{who}, {year}" if year else who for who, year in found) + ")"

    def render(match) -> str:
        role, content = match.group(1), match.group(2)
        labelled = re.fullmatch(r"(.*?)\s*<([^>]+)>", content, re.S)
        if role.startswith("cite"):
            return cite(content, textual=role in ("cite:t", "cite:ts"))
        if role == "math":
            return f"${content}$"
        if role in ("download", "doc") or (role == "ref" and labelled):
            if labelled:
                return f"[{labelled.group(1)}]({labelled.group(2)})"
            return f"[{content}]({content})" if role == "download" else content
        return labelled.group(1) if labelled else content

    return _ROLE.sub(render, text)


def exercise_notebook(name: str, solutions: Path = SOLUTIONS) -> bytes:
    """The bytes of ``exercises/<name>.ipynb``: :func:`exercise_markdown` with MyST's roles
    rendered, cell ids made from the name and position (so it depends on the solution alone),
    and the install cell first."""
    import jupytext

    from coursekit.notebooks import repository_url, with_install_cell

    notebook = jupytext.reads(exercise_markdown(name, solutions), fmt="md:myst")
    bibliography = _bibliography()
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{name.replace('_', '-')}-{index}"
        if cell.cell_type == "markdown":
            cell.source = plain_markdown(cell.source, bibliography)
    notebook.metadata.get("jupytext", {}).pop("formats", None)
    data = with_install_cell(json.loads(jupytext.writes(notebook, fmt="ipynb")),
                             repository_url(ROOT))
    return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


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
            if set(ca) != set(cb) or ca.get("held_out") != cb.get("held_out"):
                return False  # a judged task's public case holds its judge's inputs instead
            if "expected" in ca and compare(decode(ca["expected"]), decode(cb["expected"]),
                                            1e-6, 1e-9):
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
        notebook = exercise_notebook(name)
        nb, old_md = EXERCISES / f"{name}.ipynb", EXERCISES / f"{name}.md"
        public = PUBLIC / f"{name}.json"
        if args.check:
            if not nb.exists() or nb.read_bytes() != notebook:
                stale.append(_rel(nb))
            if old_md.exists():  # written by an earlier assign: a second file to open
                stale.append(f"{_rel(old_md)} (to be removed)")
            # the public answers come from running the solution: they are up to date when they
            # were made from this very solution file (--check --run also runs it and compares)
            recorded = json.loads(public.read_text(encoding="utf-8")) if public.exists() else {}
            if recorded.get("solution_sha256") != solution_digest(name) or (
                    args.run and not _same_public(recorded,
                                                  public_checks(name, grader.reference(name)))):
                stale.append(_rel(public))
            continue
        checks = public_checks(name, grader.reference(name))
        nb.write_bytes(notebook)
        old_md.unlink(missing_ok=True)
        public.write_text(json.dumps(checks, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {_rel(nb)}, {_rel(public)}")
    if stale:
        print("out of date with the solutions: " + ", ".join(stale), file=sys.stderr)
        print("run: python -m coursekit assign", file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(names)} exercise(s) up to date")
    return 0
