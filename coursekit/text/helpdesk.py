"""A grounded "Python help desk": answers questions from the offline Python documentation only,
cites the topic it used, and declines when no topic is relevant (Chapter 7).

The knowledge base is CPython's ``pydoc_data.topics`` (the ``help()`` texts of the language
reference: about 80 topics, keyed ``"assert"``, ``"try"``, ``"typesmapping"``, ...).

* **Retrieval.** Each topic is cut into passages (its paragraphs); a scikit-learn TF-IDF model
  (words and word pairs, sublinear term frequency, English stop words removed) embeds passages and
  questions. A topic's score is the cosine similarity of its best passage to the question.
* **Declining.** If the best score is below ``threshold``, the desk answers ``DECLINE`` and cites
  nothing: a question about medicine or the weather shares no vocabulary with the language
  reference, so it scores low, and a desk that declines cannot invent an answer (the failure the
  source article's customer-service example invites). ``calibrate`` picks the threshold on the
  *dev* questions only.
* **Extractive answers.** The answer is the ``n_sentences`` sentences of the chosen topic most
  similar to the question, in the topic's order, copied verbatim, so every sentence can be found in
  the cited topic (``grounding_rate`` checks that independently of how the answer was built).
* **Evaluation** (``evaluate``): topic accuracy on answerable questions, decline rate on
  out-of-scope ones, the grounding rate, and ROUGE-L/BLEU against hand-written references
  *beside two trivial baselines*: copying the question, and one fixed generic reply.

The shipped questions (``load_questions()``) are package data: 50 answerable questions with the
topic that answers them and 30 out-of-scope ones, each marked ``dev`` or ``test``.
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["HelpDeskConfig", "Answer", "HelpDesk", "load_questions", "split_sentences",
           "grounding_rate", "risk_coverage", "wilson_interval", "DECLINE", "GENERIC_REPLY"]

DECLINE = ("Sorry, I can only answer questions about the Python language from its documentation, "
           "and I found nothing relevant to this question.")
# The trivial baseline every answer is compared with: the same reply to every question.
GENERIC_REPLY = "Please see the Python documentation for the details of how this works in Python."


@dataclass
class HelpDeskConfig:
    threshold: float = 0.2     # decline when the best topic's similarity score is below this
    min_coverage: float = 0.7  # decline when a smaller share of the question's words is known
    title_weight: int = 3      # times a topic's name is repeated in front of each passage
    n_sentences: int = 2       # sentences in an extractive answer
    max_sentence_chars: int = 400  # longer "sentences" (tables, grammar) are not quoted
    n_sources: int = 3         # topic keys listed in ``sources`` (the first is the cited topic)
    retriever: str = "tfidf"   # "tfidf" (cosine similarity), or "bm25" (Okapi BM25, the
    #                            standard sparse baseline, through the rank-bm25 package)

    def __post_init__(self):
        if self.retriever not in ("tfidf", "bm25"):
            raise ValueError(f"unknown retriever {self.retriever!r}; valid: 'tfidf', 'bm25'")


@dataclass
class Answer:
    question: str
    topic: str | None          # the cited topic key, None when the desk declines
    answer: str                # extractive text from ``topic``, or ``DECLINE``
    sources: list[str]         # topic keys by decreasing score (empty when declining)
    score: float               # the best topic's retrieval score (TF-IDF: cosine, in [0, 1])

    def to_dict(self) -> dict:
        return {"question": self.question, "topic": self.topic, "answer": self.answer,
                "sources": list(self.sources), "score": round(float(self.score), 4)}


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(*])")


def _normalise(text: str) -> str:
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Prose sentences of a documentation text, whitespace collapsed; code lines, grammar rules
    and headings are left out.

    Example:
        >>> split_sentences("The pass statement\\n******\\n\\nIt does nothing.  Use it as a\\n"
        ...                 "placeholder.\\n\\n   pass_stmt ::= \\"pass\\"")
        ['It does nothing.', 'Use it as a placeholder.']
    """
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = para.split("\n")
        if (len(lines) > 1 and set(lines[1].strip()) <= set("*=-")) or para.startswith("   "):
            continue                 # a heading underlined with *** or ===, or indented code
        for s in _SENTENCE_END.split(_normalise(para)):
            if re.search(r"[.!?]$", s) and "::=" not in s and ">>>" not in s and len(s) >= 12:
                out.append(s)
    return out


def grounding_rate(answer: str, source_text: str) -> float:
    """The share of the answer's sentences that occur verbatim (whitespace collapsed) in
    ``source_text``: 1.0 for a fully grounded answer, lower for invented sentences.

    Example:
        >>> grounding_rate("It does nothing. It makes coffee.", "pass: It does nothing.")
        0.5
    """
    sentences = [s for s in _SENTENCE_END.split(_normalise(answer)) if s]
    if not sentences:
        raise ValueError("the answer has no sentences to check")
    source = _normalise(source_text)
    return sum(s in source for s in sentences) / len(sentences)


def _right(cited: str | None, question: dict) -> bool:
    """Is the cited topic one that answers ``question`` (its ``topic`` or one in ``also``)?"""
    return cited is not None and (cited == question["topic"] or cited in question.get("also", ()))


def _kind(question: dict) -> str:
    """``"answerable"``, ``"off"`` (off-domain) or ``"near"`` (near-domain, unanswerable)."""
    if question["topic"] is not None:
        return "answerable"
    return question.get("kind", "off")


def load_questions(split: str | None = None) -> list[dict]:
    """The shipped questions: dicts with ``question``, ``topic`` (None: out of scope),
    ``also`` (other topics that answer it as well), ``reference``, ``split`` ("dev" or
    "test"; ``split`` filters them) and ``kind`` ("answerable"; "off": off-domain, such as
    medicine; "near": about programming but not answerable from the language reference, such as
    other languages, third-party libraries, packaging and version history)."""
    if split not in (None, "dev", "test"):
        raise ValueError(f"split must be None, 'dev' or 'test', got {split!r}")
    path = resources.files("coursekit.text") / "data" / "helpdesk_questions.json"
    items = json.loads(path.read_text(encoding="utf-8"))["questions"]
    return [q for q in items if split is None or q["split"] == split]


class HelpDesk:
    """Retrieval and extractive answers over ``topics`` (default: ``pydoc_data.topics``).

    Example:
        >>> desk = HelpDesk()
        >>> desk.ask("What does the pass statement do?").topic
        'pass'
        >>> desk.ask("What should I take for a migraine?").topic is None
        True
    """

    def __init__(self, topics: dict[str, str] | None = None, config: HelpDeskConfig | None = None):
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

        if topics is None:
            from pydoc_data.topics import topics
        if not topics:
            raise ValueError("the help desk needs at least one topic")
        self.config = config or HelpDeskConfig()
        self.topics = dict(topics)
        # Topics overlap (``compound`` repeats ``if``, ``while``, ``try``...; ``specialnames``
        # repeats ``customization``...): a paragraph found in several topics belongs to the
        # shortest, most specific one, so the desk cites "if" rather than "compound".
        owner: dict[str, str] = {}                 # paragraph -> topic key
        for key, body in sorted(self.topics.items(), key=lambda kv: (len(kv[1]), kv[0])):
            for para in re.split(r"\n\s*\n", body):
                para = _normalise(para)
                if len(para.split()) >= 4:
                    owner.setdefault(para, key)
        keys, passages = [], []
        for para, key in owner.items():
            keys.append(key)
            passages.append(self._titled(key, para))
        self._passage_topic = np.array(keys)
        self._topic_keys = sorted(self.topics)
        # Python's keywords (if, for, while, is, not, ...) are English stop words: keep them.
        stop = sorted(ENGLISH_STOP_WORDS - set(keyword.kwlist) - set(keyword.softkwlist)
                      - {"none", "true", "false"})
        self._vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words=stop,
                                           token_pattern=r"(?u)\b\w\w+\b|[-+*/<>=&|^%~]+")
        self._passages = self._vectorizer.fit_transform(passages)           # (P, vocab)
        self._topic_docs = self._vectorizer.transform(                      # (K, vocab)
            [self._titled(k, " ".join(p for p, o in owner.items() if o == k))
             for k in self._topic_keys])
        self._analyze = self._vectorizer.build_analyzer()
        self._bm25 = None
        if self.config.retriever == "bm25":
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi([self._analyze(p) or ["_"] for p in passages])
        self._sentences = {key: split_sentences(body) for key, body in self.topics.items()}

    @classmethod
    def calibrated(cls) -> "HelpDesk":
        """A desk over ``pydoc_data.topics`` whose thresholds were chosen on the shipped *dev*
        questions (what ``python -m coursekit ask`` uses)."""
        desk = cls()
        desk.calibrate(load_questions("dev"))
        return desk

    def _titled(self, key: str, text: str) -> str:
        return " ".join([key.replace("-", " ")] * self.config.title_weight) + ". " + text

    def coverage(self, question: str) -> float:
        """The share of the question's words (stop words left out) that occur in the
        documentation: a question about medicine or cooking uses words the docs never use."""
        words = self._analyze(question)
        if not words:
            return 0.0
        return sum(w in self._vectorizer.vocabulary_ for w in words) / len(words)

    def _topic_scores(self, question: str) -> list[tuple[str, float]]:
        """Topics by decreasing score: the mean of the cosine similarity of the question to the
        topic's best passage and to the whole topic (a passage finds the precise paragraph, the
        topic rewards questions that touch several of its paragraphs)."""
        if self._bm25 is not None:  # BM25: a topic scores as its best passage
            sims = self._bm25.get_scores(self._analyze(question))            # (P,)
            best = dict.fromkeys(self._topic_keys, 0.0)
            for key, s in zip(self._passage_topic, sims):
                best[key] = max(best[key], float(s))
            return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        q = self._vectorizer.transform([question])                           # (1, vocab)
        sims = (self._passages @ q.T).toarray()[:, 0]                        # (P,)
        best = dict.fromkeys(self._topic_keys, 0.0)
        for key, s in zip(self._passage_topic, sims):
            best[key] = max(best[key], float(s))
        whole = (self._topic_docs @ q.T).toarray()[:, 0]                     # (K,)
        scores = {k: 0.5 * best[k] + 0.5 * float(w) for k, w in zip(self._topic_keys, whole)}
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))

    def ask(self, question: str) -> Answer:
        """Answer ``question`` from one topic, or decline."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"the question is empty; ask something, got {question!r}")
        ranked = self._topic_scores(question)
        topic, score = ranked[0]
        if score < self.config.threshold or self.coverage(question) < self.config.min_coverage:
            return Answer(question, None, DECLINE, [], score)
        sentences = [s for s in self._sentences[topic] if len(s) <= self.config.max_sentence_chars]
        if not sentences:
            return Answer(question, None, DECLINE, [], score)
        vs = self._vectorizer.transform(sentences)
        sims = (vs @ self._vectorizer.transform([question]).T).toarray()[:, 0]
        chosen = sorted(np.argsort(-sims, kind="stable")[:self.config.n_sentences])
        answer = " ".join(sentences[i] for i in chosen)
        return Answer(question, topic, answer,
                      [k for k, _ in ranked[:self.config.n_sources]], score)

    def calibrate(self, questions: list[dict], min_decline: float = 0.9) -> tuple[float, float]:
        """Choose ``threshold`` and ``min_coverage`` on ``questions`` (use the *dev* split only).

        The rule of selective prediction: among the pairs that decline at least ``min_decline``
        of each kind of unanswerable question (off-domain, near-domain), the one with the best
        topic accuracy on answerable questions (then the best mean decline rate; ties to the
        lower values). If no pair reaches ``min_decline``, the pair with the best mean of the
        topic accuracy and the decline rates. Returns the pair and sets it in ``config``."""
        if not 0.0 <= min_decline <= 1.0:
            raise ValueError(f"min_decline must lie in [0, 1], got {min_decline}")
        rows = [(*self._topic_scores(q["question"])[0], self.coverage(q["question"]), q)
                for q in questions]
        n_in = max(sum(q["topic"] is not None for *_, q in rows), 1)
        kinds = sorted({_kind(q) for *_, q in rows} - {"answerable"})
        n_out = {k: sum(_kind(q) == k for *_, q in rows) for k in kinds}
        best, best_value = (self.config.threshold, self.config.min_coverage), (-1.0, -1.0, -1.0)
        for t in sorted({0.0} | {round(s, 4) for _, s, _, _ in rows}):
            for c in sorted({0.0} | {round(v, 4) for _, _, v, _ in rows}):
                right = sum(_right(k, q) and s >= t and v >= c for k, s, v, q in rows
                            if q["topic"] is not None) / n_in
                declines = [sum(s < t or v < c for _, s, v, q in rows
                                if _kind(q) == kind) / n_out[kind] for kind in kinds]
                mean_decline = float(np.mean(declines)) if declines else 1.0
                feasible = all(d >= min_decline for d in declines)
                value = ((1.0, right, mean_decline) if feasible
                         else (0.0, (right + sum(declines)) / (1 + len(declines)), 0.0))
                if value > tuple(v + 1e-12 for v in best_value):
                    best, best_value = (float(t), float(c)), value
        self.config.threshold, self.config.min_coverage = best
        return best

    def evaluate(self, questions: list[dict]) -> dict[str, float]:
        """Topic accuracy (answerable questions: the cited topic is the right one; a decline is
        wrong), decline rate (off-domain questions), near-domain decline rate, grounding rate (answer sentences found in
        the cited topic, over all answers given) and ROUGE-L / BLEU of the answers to answerable
        questions against their references, beside copying the question and ``GENERIC_REPLY``."""
        from coursekit.metrics.text import bleu, rouge

        answers = [self.ask(q["question"]) for q in questions]
        inscope = [(q, a) for q, a in zip(questions, answers) if q["topic"] is not None]
        outscope = [a for q, a in zip(questions, answers) if _kind(q) == "off"]
        near = [a for q, a in zip(questions, answers) if _kind(q) == "near"]
        given = [a for a in answers if a.topic is not None]
        grounded = [grounding_rate(a.answer, self.topics[a.topic]) for a in given]
        refs = [q["reference"] for q, _ in inscope]
        systems = {"help desk": [a.answer for _, a in inscope],
                   "copy the question": [q["question"] for q, _ in inscope],
                   "generic reply": [GENERIC_REPLY] * len(inscope)}
        out = {"topic_accuracy": float(np.mean([_right(a.topic, q) for q, a in inscope]))
               if inscope else float("nan"),
               "decline_rate": float(np.mean([a.topic is None for a in outscope]))
               if outscope else float("nan"),
               "decline_near": float(np.mean([a.topic is None for a in near]))
               if near else float("nan"),
               "grounding": float(np.mean(grounded)) if grounded else float("nan"),
               "answered": len(given)}
        if refs:
            for name, hyps in systems.items():
                out[f"rougeL[{name}]"] = rouge(hyps, refs)["rougeL"]
                out[f"bleu[{name}]"] = bleu(hyps, refs)
        return out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % with ``z = 1.96``); ``(0, 1)`` when n = 0.

    Example:
        >>> [round(v, 3) for v in wilson_interval(8, 10)]
        [0.49, 0.943]
    """
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} and {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def risk_coverage(desk: HelpDesk, questions: list[dict]) -> list[dict]:
    """The risk-coverage curve of ``desk`` on ``questions``: for every score threshold (at the
    desk's ``min_coverage``), the share of questions answered (coverage) and the selective
    accuracy, the share of answered questions whose cited topic is right (answering an
    unanswerable question is wrong), with its 95 % Wilson interval. Rows by growing coverage."""
    rows = []
    for q in questions:
        topic, score = desk._topic_scores(q["question"])[0]
        known = desk.coverage(q["question"]) >= desk.config.min_coverage
        rows.append((score if known else -np.inf, _right(topic, q)))
    rows.sort(key=lambda r: -r[0])
    curve = []
    for i in range(1, len(rows) + 1):
        if np.isinf(rows[i - 1][0]) or (i < len(rows) and rows[i][0] == rows[i - 1][0]):
            continue
        right = sum(r for _, r in rows[:i])
        low, high = wilson_interval(right, i)
        curve.append({"threshold": float(rows[i - 1][0]), "coverage": i / len(rows),
                      "accuracy": right / i, "low": low, "high": high})
    return curve
