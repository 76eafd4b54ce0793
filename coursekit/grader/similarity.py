"""Similar submissions, for a human to look at: token fingerprints of the students' own code
(exercises part).

The code a student wrote is what is left of the notebook's code cells once every line of the
handed-out template is removed. It is tokenised (comments and layout dropped, names replaced by
one symbol, so renaming variables changes nothing; each cell on its own, so one cell that does
not parse costs only itself; no-op statements such as ``pass`` and ``;`` dropped, so padding
changes nothing), cut into overlapping runs of ``K`` tokens,
and each run hashed; winnowing (Schleimer, Wilkerson and Aiken, 2003, the method behind MOSS)
keeps the smallest hash of every window of ``W`` runs. Two submissions of an exercise are as
similar as the Jaccard index of their kept hashes. This is evidence to read, never a verdict.

:func:`flags` names what a human should look at instead of letting it drop out silently: too
little own code to compare, code run from strings (``exec``, ``eval``, ``base64``), and imports
of the course's own package, which holds reference code of several graded functions.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import keyword
import re
import tokenize

__all__ = ["fingerprints", "similar_pairs", "flags", "K", "W", "MIN_PRINTS"]

K = 6            # tokens per hashed run
W = 4            # runs per winnowing window
MAX_PRINTS = 4000
MIN_PRINTS = 5   # fewer kept hashes: too little own code to compare
_NO_OPS = {"pass", ";"}
_OBFUSCATED = re.compile(r"\b(exec|eval|compile|__import__)\s*\(|\b(base64|marshal|zlib|codecs|"
                         r"importlib)\b")
_COURSEKIT = re.compile(r"^\s*(?:from\s+(coursekit(?:\.\w+)*)\s+import|import\s+"
                        r"(coursekit(?:\.\w+)*))", re.M)


def _tokens(source: str) -> list[str]:
    out = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                              tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            if token.string in _NO_OPS:
                continue
            if token.type == tokenize.NAME and not keyword.iskeyword(token.string):
                out.append("N")
            elif token.type == tokenize.STRING:
                out.append("S")
            else:
                out.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def fingerprints(cells: list[str], template: set[str]) -> list[int]:
    """The winnowed hashes of the code in ``cells`` that is not a line of ``template``.

    Example:
        >>> a = fingerprints(["def f(x):\\n    y = x * 2 + 1\\n    return y - 3"], set())
        >>> b = fingerprints(["def g(z):\\n    w = z * 2 + 1\\n    return w - 3"], set())
        >>> a == b and len(a) > 0
        True
    """
    tokens = [t for cell in cells for t in _tokens("\n".join(
        line for line in cell.splitlines() if line.strip() and line.strip() not in template))]
    runs = [int.from_bytes(hashlib.blake2b(" ".join(tokens[i:i + K]).encode(),
                                           digest_size=6).digest(), "big")
            for i in range(max(0, len(tokens) - K + 1))]
    kept = {min(runs[i:i + W]) for i in range(max(0, len(runs) - W + 1))} or set(runs)
    return sorted(kept)[:MAX_PRINTS]


def flags(cells: list[str], prints: list[int], template: set[str] = frozenset()) -> list[str]:
    """What a human should look at in a submission's own code (the lines not in ``template``,
    the handed-out exercise): empty when nothing.

    Example:
        >>> flags(["from coursekit.losses import gaussian_kl", "exec('x = 1')"], [1, 2])
        ['too little own code to compare (2 fingerprints)', 'runs code from strings (exec)', 'imports coursekit.losses (the course package holds reference code)']
    """
    found = []
    if len(prints) < MIN_PRINTS:
        found.append(f"too little own code to compare ({len(prints)} fingerprints)")
    code = "\n".join(line for cell in cells for line in cell.splitlines()
                     if line.strip() not in template)
    hidden = sorted({m.group(1) or m.group(2) for m in _OBFUSCATED.finditer(code)})
    if hidden:
        found.append(f"runs code from strings ({', '.join(hidden)})")
    modules = sorted({m.group(1) or m.group(2) for m in _COURSEKIT.finditer(code)}
                     - {"coursekit.grader"})
    if modules:
        found.append(f"imports {', '.join(modules)} (the course package holds reference code)")
    return found


def similar_pairs(reports: list, threshold: float = 0.5, top: int = 50) -> list[tuple]:
    """``(exercise, a, b, similarity, shared)`` for the most similar pairs of each exercise."""
    groups: dict = {}
    for report in reports:
        prints = report.get("fingerprints")
        if report.get("exercise") and isinstance(prints, list) and len(prints) >= MIN_PRINTS:
            groups.setdefault(report["exercise"], []).append(
                (report["submission"], frozenset(prints)))
    pairs = []
    for exercise, members in sorted(groups.items()):
        for (a, fa), (b, fb) in itertools.combinations(members, 2):
            shared = len(fa & fb)
            score = shared / len(fa | fb)
            if score >= threshold:
                pairs.append((exercise, a, b, round(score, 3), shared))
    pairs.sort(key=lambda p: (-p[3], p[0], p[1], p[2]))
    return pairs[:top]
