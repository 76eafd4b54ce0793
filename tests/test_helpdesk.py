"""Tests of the Python help desk (coursekit.text.helpdesk) and the ``ask`` command."""

import json

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
def test_text_benchmark_quick_run_ends_with_the_issue_keys(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "text.py"
    spec = importlib.util.spec_from_file_location("bench_text", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.main(["--quick"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert [kv.split("=")[0] for kv in last.split()] == [
        "gpt_bpc_chapter", "ngram_bpc", "best_bpc", "helpdesk_topic_acc", "grounding", "decline"]
    assert figures["best_bpc"] <= figures["ngram_bpc"] + 0.05   # w is chosen on dev, not val
