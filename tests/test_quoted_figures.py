"""Every benchmark figure the book quotes is in a committed results file (issue 22, section 0).

A chapter marks what its prose quotes with ``% bench NAME key=value ...`` lines (see
``coursekit/results.py`` and CONTRIBUTING.md); this test checks each against
``benchmarks/results/NAME.json`` at the rounding quoted, and checks the helpers themselves.
"""

import json

import pytest

from coursekit import results

# the chapters, and the solutions, whose written tasks' prompts and model answers quote figures
MARKDOWN = sorted((results.ROOT / "book").glob("*.md")) + \
    sorted((results.ROOT / "solutions").glob("*.md"))


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_quoted_figure_is_committed(md):
    wrong = []
    for q in results.quotes(md):
        try:
            record = results.load(q.name)
        except FileNotFoundError as e:
            wrong.append(f"{md.name}:{q.line}: {e}")
            continue
        for key, text in q.figures.items():
            value = record["figures"].get(key)
            if value is None:
                wrong.append(f"{md.name}:{q.line}: {q.name}.json has no figure {key!r}")
            elif not results.matches(value, text):
                wrong.append(f"{md.name}:{q.line}: quotes {key}={text}, {q.name}.json: {value}")
    assert not wrong, "\n".join(wrong)


def test_matches_uses_the_quoted_rounding():
    assert results.matches(0.8134, "0.81")
    assert not results.matches(0.8164, "0.81")
    assert results.matches(82.449, "82.4")
    assert not results.matches(82.46, "82.4")
    assert results.matches(17.4, "17")


def test_write_load_check_round_trip(tmp_path):
    path = results.write("demo", {"acc": 0.8134, "n": 10}, seeds=[0, 1], budget="1 epoch",
                         root=tmp_path)
    record = json.loads(path.read_text())
    assert record["figures"] == {"acc": 0.8134, "n": 10}
    assert record["machine"]["cores"] >= 1 and record["seeds"] == [0, 1]
    loaded = results.load("demo", root=tmp_path)
    results.check(loaded, acc="0.81", n="10")
    with pytest.raises(AssertionError, match="acc = 0.82"):
        results.check(loaded, acc="0.82")
    with pytest.raises(AssertionError, match="no figure 'missing'"):
        results.check(loaded, missing="1")


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="lower_snake_case"):
        results.write("../x", {"a": 1.0}, seeds=0, budget="", root=tmp_path)
    with pytest.raises(ValueError, match="finite numbers"):
        results.write("x", {"a": float("nan")}, seeds=0, budget="", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="benchmarks/nothing.py"):
        results.load("nothing", root=tmp_path)


def test_quotes_are_parsed(tmp_path):
    md = tmp_path / "c.md"
    md.write_text("text 0.81\n% bench few_labels m2_acc_1=0.81 cc_acc_1=0.74\nmore\n")
    (q,) = results.quotes(md)
    assert (q.name, q.line, q.figures) == ("few_labels", 2, {"m2_acc_1": "0.81",
                                                            "cc_acc_1": "0.74"})
