"""One home per helper: the copies that issue 20 folded into ``coursekit.utils``,
``coursekit.losses``, ``coursekit.data`` and ``coursekit.metrics`` must not grow back, and the
package must not repeat itself (``duplicates``, where the tool is installed)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "coursekit"

# pattern -> (the one home that may hold it, what to call instead)
PATTERNS = {
    r"was_training\s*=": ((), "utils.eval_mode"),
    r"\.cpu\(\) if torch\.is_tensor\(": ((), "utils.to_numpy"),
    r"\.cpu\(\)\.numpy\(\)": (("utils.py",), "utils.to_numpy"),
    r"torch\.round\([^)]*\* \(": (("data/levels.py",), "data.to_levels"),
    r"mu \+ torch\.exp\(0\.5 \* logvar\) \*": (("losses.py", "grader/drivers.py"),
                                               "losses.reparameterize"),
    r"def (_?auroc|_?random_shift|check_labels|draw_labelled)\(": (
        ("metrics/classification.py", "data/augment.py", "data/labels.py"),
        "coursekit.metrics.auroc / coursekit.data"),
    r"\._from_decoded\(": ((), "VAE.pixels or vae.likelihood"),
    r"likelihood\s*==\s*[\"']": ((), "the likelihood object (models/likelihoods.py)"),
}


def _sources():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_copied_pattern_does_not_regrow(pattern):
    homes, instead = PATTERNS[pattern]
    found = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in homes:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"coursekit/{rel}:{number}: {line.strip()}")
    assert not found, f"use {instead} instead of:\n" + "\n".join(found)


def test_the_pattern_check_finds_a_copy(tmp_path):
    line = "    was_training = model.training"
    assert re.search(next(iter(PATTERNS)), line)  # the check is not vacuous


@pytest.mark.skipif(shutil.which("duplicates") is None, reason="the duplicates tool is not "
                    "installed here")
def test_the_package_repeats_itself_at_most_three_times():
    out = subprocess.run(["duplicates", "--seconds", "60"], cwd=PACKAGE, capture_output=True,
                         text=True, timeout=120).stdout
    head = re.search(r"(\d+) pairs? of places", out)
    pairs = int(head.group(1)) if head else 0
    assert "incomplete" not in out, out
    assert pairs <= 3, out
