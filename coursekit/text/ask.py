"""``python -m coursekit ask "QUESTION" [--json]``: one question to the Python help desk of
Chapter 7 (``coursekit.text.helpdesk``).

Prints the answer and the cited topic, or the decline; ``--json`` prints one object with the keys
``question``, ``topic`` (the documentation topic key, or null when the desk declines), ``answer``,
``sources`` (topic keys) and ``score``. Exit status 0 for an answer or a decline, 2 with a message
on stderr for an empty question.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help="a question about the Python language, in quotes")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (question, topic, answer, sources, score)")


def run(args: argparse.Namespace) -> int:
    from coursekit.text.helpdesk import HelpDesk

    if not args.question.strip():
        print("python -m coursekit ask: error: the question is empty; ask something, e.g. "
              "python -m coursekit ask \"What does the pass statement do?\"", file=sys.stderr)
        return 2
    answer = HelpDesk.calibrated().ask(args.question)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
    elif answer.topic is None:
        print(answer.answer)
    else:
        print(answer.answer)
        print(f"\n(source: Python documentation topic {answer.topic!r}; also see "
              f"{', '.join(answer.sources[1:]) or 'nothing else'}; score {answer.score:.2f})")
    return 0
