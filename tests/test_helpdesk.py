"""Tests of the Python help desk (coursekit.text.helpdesk) and the ``ask`` command."""

import json
import sys

import pytest

from coursekit.__main__ import main
from coursekit.text.helpdesk import (DECLINE, HelpDesk, grounding_rate, load_questions,
                                     split_sentences)


@pytest.fixture(scope="module")
def desk():
    return HelpDesk.calibrated()


@pytest.mark.parametrize("question", ["asdf qwerty zxcv", "blorp fizzle wug snarf",
                                      "What dose of antibiotics should my child take?"])
def test_declines_nonsense_and_out_of_scope(desk, question):
    answer = desk.ask(question)
    assert answer.topic is None and answer.answer == DECLINE and answer.sources == []


def test_answers_a_known_question_from_the_cited_topic(desk):
    answer = desk.ask("What does the assert statement do?")
    assert answer.topic == "assert" and answer.sources[0] == "assert"
    assert grounding_rate(answer.answer, desk.topics["assert"]) == 1.0
    assert 0.0 < answer.score <= 1.0


def test_grounding_rate_catches_an_invented_sentence():
    source = "The pass statement does nothing. It is a placeholder."
    assert grounding_rate("It is a placeholder.", source) == 1.0
    assert grounding_rate("It is a placeholder. It also sends e-mail.", source) == 0.5
    with pytest.raises(ValueError, match="no sentences"):
        grounding_rate("   ", source)


def test_split_sentences_skips_headings_and_code():
    text = "Title\n*****\n\nFirst one here.  Second one\nhere.\n\n   x = 1\n   y ::= z"
    assert split_sentences(text) == ["First one here.", "Second one here."]


def test_shipped_questions_are_well_formed():
    from pydoc_data.topics import topics

    items = load_questions()
    assert {q["split"] for q in items} == {"dev", "test"}
    assert len(load_questions("dev")) + len(load_questions("test")) == len(items)
    for q in items:
        if q["topic"] is not None:
            assert q["topic"] in topics and q["reference"]
    with pytest.raises(ValueError, match="split"):
        load_questions("train")


def test_evaluation_reports_baselines_and_rates(desk):
    report = desk.evaluate(load_questions("test"))
    for key in ("topic_accuracy", "decline_rate", "grounding"):
        assert 0.0 <= report[key] <= 1.0
    assert report["grounding"] == 1.0          # extractive answers are copied from the topic
    for name in ("help desk", "copy the question", "generic reply"):
        assert 0.0 <= report[f"rougeL[{name}]"] <= 1.0 and f"bleu[{name}]" in report


def test_empty_question_is_an_error(desk):
    with pytest.raises(ValueError, match="empty"):
        desk.ask("  ")


def test_ask_command_json(capsys):
    assert main(["ask", "What does the pass statement do?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["question", "topic", "answer", "sources", "score"]
    assert out["topic"] == "pass" and out["sources"][0] == "pass"


def test_ask_command_declines_with_exit_zero(capsys):
    assert main(["ask", "How do I grow tomatoes on a balcony?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["topic"] is None and out["sources"] == []


def test_ask_command_rejects_an_empty_question(capsys):
    assert main(["ask", ""]) == 2
    assert "empty" in capsys.readouterr().err


@pytest.mark.slow
def test_text_benchmark_quick_run_ends_with_the_issue_keys(capsys, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "text.py"
    spec = importlib.util.spec_from_file_location("bench_text", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_text", bench)  # its workers unpickle functions
    spec.loader.exec_module(bench)
    figures = bench.main(["--quick"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert [kv.split("=")[0] for kv in last.split()] == [
        "gpt_bpc_chapter", "ngram_bpc", "best_bpc", "helpdesk_topic_acc", "grounding", "decline",
        "decline_near"]
    assert figures["best_bpc"] <= figures["ngram_bpc"] + 0.05   # w is chosen on dev, not val


def test_near_domain_questions_are_shipped_and_split():
    near = [q for q in load_questions() if q.get("kind") == "near"]
    assert len(near) >= 20 and all(q["topic"] is None for q in near)
    assert {q["split"] for q in near} == {"dev", "test"}


def test_calibration_meets_its_decline_target_on_dev(desk):
    report = desk.evaluate(load_questions("dev"))
    assert report["decline_near"] >= 0.9 and report["decline_rate"] >= 0.9
    with pytest.raises(ValueError, match="min_decline"):
        HelpDesk().calibrate(load_questions("dev"), min_decline=1.5)


def test_risk_coverage_curve(desk):
    from coursekit.text.helpdesk import risk_coverage, wilson_interval

    curve = risk_coverage(desk, load_questions("test"))
    cover = [row["coverage"] for row in curve]
    assert cover == sorted(cover) and 0 < cover[0] and cover[-1] <= 1
    for row in curve:
        assert row["low"] - 1e-9 <= row["accuracy"] <= row["high"] + 1e-9
    low, high = wilson_interval(5, 10)
    assert low < 0.5 < high and abs((low + high) / 2 - 0.5) < 1e-12
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_bm25_retriever_agrees_with_rank_bm25():
    from rank_bm25 import BM25Okapi

    topics = {"pass": "The pass statement does nothing at all here.",
              "break": "The break statement leaves the innermost loop early.",
              "return": "The return statement leaves the function with a value."}
    from coursekit.text.helpdesk import HelpDeskConfig

    desk = HelpDesk(topics, HelpDeskConfig(retriever="bm25"))
    ranked = dict(desk._topic_scores("How do I leave a loop early?"))
    keys = list(desk._passage_topic)
    reference = BM25Okapi([desk._analyze(desk._titled(k, topics[k])) for k in keys])
    scores = reference.get_scores(desk._analyze("How do I leave a loop early?"))
    assert max(ranked, key=ranked.get) == "break"
    for k, s in zip(keys, scores):
        assert abs(ranked[k] - s) < 1e-9
    with pytest.raises(ValueError, match="retriever"):
        HelpDeskConfig(retriever="dense")
