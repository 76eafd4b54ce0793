"""Per-student variants: each student's own inputs for an exercise's numeric tasks
(exercises part).

A solution's grading cell may define ``VARIANT(seed)``, returning ``{task id: [case, ...]}``
(at least one public and one hidden case per task) built from ``np.random.default_rng(seed)``;
those cases replace the task's own for that student. The seed is an HMAC of the student id
under a course secret that students never see (:func:`seed_of`), so a student cannot compute
another's variant and the id alone reveals nothing.

* ``python -m coursekit grade release EXERCISE --roster R --secret FILE --out DIR`` writes one
  notebook per student, with ``metadata.coursekit.variant`` holding the student id, the seed and
  the public cases with the reference's answers; :func:`coursekit.grader.tasks.check` reads them
  from the notebook (:func:`notebook_variant`).
* ``grade --secret FILE`` regenerates each student's variant from the roster, grades against
  it, and refuses (reports "not graded") a notebook whose variant belongs to someone else.
* ``similarity.csv`` flags a submission whose answers match another student's variant
  (:func:`variant_pairs`): numbers copied from someone else's notebook.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
from pathlib import Path

__all__ = ["seed_of", "read_secret", "apply_variant", "notebook_variant", "fingerprint",
           "variant_pairs", "release", "check_metadata"]


def seed_of(secret: bytes, student: str) -> int:
    """The variant seed of ``student``: an HMAC-SHA256 under the course secret, 31 bits.

    Example:
        >>> seed_of(b"a course secret of enough bytes", "s1")
        74088959
    """
    digest = hmac.new(secret, student.strip().encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def read_secret(path: Path) -> bytes:
    """The course secret from ``path`` (at least 16 bytes).

    Raises:
        ValueError: missing or too short.
    """
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as error:
        raise ValueError(f"cannot read the course secret {path}: {error.strerror}") from None
    if len(secret) < 16:
        raise ValueError(f"the course secret in {path} must hold at least 16 bytes "
                         "(python -c 'import secrets; print(secrets.token_hex(32))' makes one)")
    return secret


def apply_variant(exercise, seed: int):
    """A copy of ``exercise`` whose variant tasks use the cases of ``VARIANT(seed)``.

    Raises:
        ValueError: ``VARIANT`` names an unknown task, or a task without a public and a hidden
            case.
    """
    variant = copy.copy(exercise)
    cases = exercise.variant(seed)
    by_id = {t.id: t for t in exercise.tasks}
    unknown = set(cases) - set(by_id)
    if unknown:
        raise ValueError(f"VARIANT of {exercise.name} names unknown tasks {sorted(unknown)}")
    variant.tasks = []
    for task in exercise.tasks:
        if task.id in cases:
            task = copy.copy(task)
            task.cases = list(cases[task.id])
            task.__post_init__()  # one public and one hidden case, again
        variant.tasks.append(task)
    return variant


def check_metadata(metadata: dict, seed: int) -> str | None:
    """``None`` when the notebook's variant is ``seed``'s (or it has none), else why not."""
    stated = metadata.get("coursekit", {}) if isinstance(metadata.get("coursekit"), dict) else {}
    variant = stated.get("variant")
    if variant is None:
        return None
    if not isinstance(variant, dict) or variant.get("seed") != seed:
        owner = variant.get("student") if isinstance(variant, dict) else None
        return (f"the notebook holds the variant of another student ({str(owner)[:40]!r}), "
                "not this student's: it was handed out to someone else")
    return None


def fingerprint(value) -> str:
    """A short hash of an answer, numbers rounded to 4 significant digits (to compare answers
    across students, never to grade)."""
    def rounded(v):
        if hasattr(v, "tolist"):  # numpy arrays and scalars
            v = v.tolist()
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, float):
            return float(f"{v:.4g}")
        if isinstance(v, list):
            return [rounded(x) for x in v]
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        return v

    text = json.dumps(rounded(value), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def variant_pairs(reports: list) -> list[list]:
    """Rows ``[exercise, a, b, "", "", note]`` for submissions whose answers on variant cases
    match the reference answers of another student's variant and not their own."""
    rows = []
    graded = [r for r in reports if r.get("variant_answers") and r.get("exercise")]
    for a in graded:
        for b in graded:
            if a is b or a["exercise"] != b["exercise"] or a.get("seed") == b.get("seed"):
                continue
            for task, answers in a["variant_answers"].items():
                theirs = b.get("variant_expected", {}).get(task, [])
                mine = a.get("variant_expected", {}).get(task, [])
                hits = [k + 1 for k, h in enumerate(answers)
                        if h and k < len(theirs) and h == theirs[k]
                        and (k >= len(mine) or h != mine[k])]
                if hits:
                    rows.append([a["exercise"], a["submission"], b["submission"], "", "",
                                 f"{a['submission']}'s answers to {task} (case(s) "
                                 f"{', '.join(map(str, hits))}) are {b['submission']}'s "
                                 "variant's"])
    return rows


def notebook_variant(task_id: str) -> dict | None:
    """The variant (from ``metadata.coursekit.variant``) of the notebook running this kernel
    that has public cases for ``task_id``, or ``None``.

    The notebook is the one Jupyter names (``JPY_SESSION_NAME``, VS Code's
    ``__vsc_ipynb_file__``, or ``COURSEKIT_NOTEBOOK``), else the one notebook in the working
    folder with a variant for the task.
    """
    candidates = []
    for name in ("COURSEKIT_NOTEBOOK", "JPY_SESSION_NAME"):
        if os.environ.get(name, "").endswith(".ipynb"):
            candidates.append(Path(os.environ[name]))
    try:
        shell = get_ipython()  # noqa: F821 - defined inside IPython only
        if shell.user_ns.get("__vsc_ipynb_file__"):
            candidates.append(Path(shell.user_ns["__vsc_ipynb_file__"]))
    except NameError:
        pass
    named = [p for p in candidates if p.is_file()]
    for path in named or sorted(Path.cwd().glob("*.ipynb")):
        try:
            metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError):
            continue
        variant = metadata.get("coursekit", {}).get("variant")
        if isinstance(variant, dict) and task_id in variant.get("public", {}):
            return variant
    return None


def release(name: str, roster_path: Path, secret_path: Path, out: Path, *,
            unsafe: bool = False) -> int:
    """Write ``OUT/<student>-<exercise>.ipynb`` for every roster student; return 0.

    Raises:
        ValueError: an exercise without ``VARIANT``, a bad roster or secret.
    """
    from coursekit.grader.assign import EXERCISES
    from coursekit.grader.grade import Grader
    from coursekit.grader.gradebook import read_roster
    from coursekit.grader.protocol import public_spec
    from coursekit.grader.sandbox import Limits
    from coursekit.grader.tasks import load_exercise

    exercise = load_exercise(name)
    if exercise.variant is None:
        raise ValueError(f"{name} has no VARIANT in its grading cell: every student gets the "
                         "same notebook, exercises/" + f"{name}.ipynb")
    secret = read_secret(secret_path)
    students = sorted({e["student"] for e in read_roster(roster_path).values()})
    template = json.loads((EXERCISES / f"{name}.ipynb").read_text(encoding="utf-8"))
    grader = Grader(Limits(timeout=300), unsafe=unsafe)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for student in students:
        seed = seed_of(secret, student)
        reference = grader.reference(name, seed=seed)
        public = {}
        for i, task in enumerate(reference.exercise.tasks):
            if task.id in exercise.variant(seed):
                expected = [reference.answers[(i, k)] for k, c in enumerate(task.cases)
                            if c.public]
                public[task.id] = public_spec(task, expected)
        notebook = copy.deepcopy(template)
        notebook["metadata"].setdefault("coursekit", {})["variant"] = {
            "student": student, "seed": seed, "public": public}
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in student)
        path = out / f"{safe}-{name}.ipynb"
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        print(f"wrote {path} (variant of {student})")
    return 0
