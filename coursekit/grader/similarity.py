"""Similar submissions, for a human to look at: token fingerprints of the students' own code
(exercises part).

The code a student wrote is what is left of the notebook's code cells once every line of the
handed-out template is removed. It is tokenised (comments and layout dropped, names replaced by
one symbol, so renaming variables changes nothing), cut into overlapping runs of ``K`` tokens,
and each run hashed; winnowing (Schleimer, Wilkerson and Aiken, 2003, the method behind MOSS)
keeps the smallest hash of every window of ``W`` runs. Two submissions of an exercise are as
similar as the Jaccard index of their kept hashes. This is evidence to read, never a verdict.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import keyword
import tokenize

__all__ = ["fingerprints", "similar_pairs", "K", "W"]

K = 6            # tokens per hashed run
W = 4            # runs per winnowing window
MAX_PRINTS = 4000


def _tokens(source: str) -> list[str]:
    out = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                              tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
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
    own = "\n".join(line for cell in cells for line in cell.splitlines()
                    if line.strip() and line.strip() not in template)
    tokens = _tokens(own)
    runs = [int.from_bytes(hashlib.blake2b(" ".join(tokens[i:i + K]).encode(),
                                           digest_size=6).digest(), "big")
            for i in range(max(0, len(tokens) - K + 1))]
    kept = {min(runs[i:i + W]) for i in range(max(0, len(runs) - W + 1))} or set(runs)
    return sorted(kept)[:MAX_PRINTS]


def similar_pairs(reports: list, threshold: float = 0.5, top: int = 50) -> list[tuple]:
    """``(exercise, a, b, similarity, shared)`` for the most similar pairs of each exercise."""
    groups: dict = {}
    for report in reports:
        prints = report.get("fingerprints")
        if report.get("exercise") and isinstance(prints, list) and len(prints) >= 5:
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
