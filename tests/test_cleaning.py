"""coursekit.cleaning: each step on its own, and the whole pipeline scored against the truth of a
dirty collection built from the real digits (Chapter 1)."""

from collections import Counter

import numpy as np
import pytest

from coursekit.cleaning import (CleaningConfig, DirtyConfig, Record, clean, exact_duplicates,
                                make_dirty, naive_ingest, near_duplicates, normalise,
                                quality_reason, to_levels, validate)
from coursekit.data import digits

INJECTED = ("noise", "blank", "inverted", "not_finite", "out_of_range", "bad_shape")


@pytest.fixture(scope="module")
def real():
    return digits("all").levels.numpy()[:, 0]  # (1797, 8, 8)


@pytest.fixture(scope="module")
def dirty():
    return make_dirty(digits("train").levels, DirtyConfig(seed=0))


def test_validate_each_reason():
    ok = np.full((8, 8), 3)
    assert validate(ok, (8, 8), 16) is None
    assert validate(np.zeros((8, 7)), (8, 8), 16) == "bad_shape"
    assert validate(np.zeros(64), (8, 8), 16) == "bad_shape"  # same size, other shape: refused
    with_nan = ok.astype(float)
    with_nan[2, 3] = np.nan
    assert validate(with_nan, (8, 8), 16) == "not_finite"
    with_inf = ok.astype(float)
    with_inf[0, 0] = np.inf
    assert validate(with_inf, (8, 8), 16) == "not_finite"
    assert validate(np.full((8, 8), "a"), (8, 8), 16) == "not_finite"
    assert validate(ok * 6, (8, 8), 16) == "out_of_range"
    assert validate(-ok, (8, 8), 16) == "out_of_range"
    assert validate(ok / 16, (8, 8), 1.0) is None


@pytest.mark.parametrize("top", [16, 1.0, 255])
def test_normalise_and_quantise_recover_levels_from_every_scale(real, top):
    levels = real[:50]
    stored = levels / 16 if top == 1.0 else np.rint(levels * top / 16)
    np.testing.assert_array_equal(to_levels(normalise(stored, top), 17), levels)


def test_normalise_and_quantise_errors():
    with pytest.raises(ValueError, match="max_value must be > 0, got 0"):
        normalise(np.zeros(3), 0)
    with pytest.raises(ValueError, match="max 1.5"):
        to_levels(np.array([0.2, 1.5]), 17)


def test_quality_filter_keeps_every_real_digit_and_catches_junk(real):
    cfg = CleaningConfig()
    assert all(quality_reason(x / 16, x, cfg) is None for x in real)
    rng = np.random.default_rng(0)
    for value in (0, 5, 16):
        blank = np.full((8, 8), value)
        assert quality_reason(blank / 16, blank, cfg) == "blank"
    for x in real[:200]:
        inverted = 16 - x
        assert quality_reason(inverted / 16, inverted, cfg) == "inverted"
    for _ in range(500):
        noise = rng.integers(0, 17, size=(8, 8))
        assert quality_reason(noise / 16, noise, cfg) == "noise"


def test_exact_duplicates_across_scales(real):
    # The same digit from a 0..16 source and from a 0..255 source is one image once quantised.
    a = real[:5]
    b = to_levels(normalise(np.rint(real[[3, 1]] * 255 / 16), 255), 17)
    found = exact_duplicates(np.concatenate([a, b]))
    assert found == {5: 3, 6: 1}
    assert exact_duplicates(real) == {}  # the 1,797 digits are all distinct


def test_near_duplicates_threshold_and_order(real):
    base = real[:20].copy()
    near = base[7].copy()
    near[4, 4] = near[4, 4] + 1 if near[4, 4] < 16 else 15
    far = base[9].copy()
    far[:, 0] = 16  # a whole column changed: far more than the threshold
    found = near_duplicates(np.concatenate([base, [near, far]]), threshold=3.0)
    assert found == {20: 7}
    assert near_duplicates(real, threshold=3.0) == {}  # no two real digits are that close
    # Of a group of near copies the first one stays.
    assert near_duplicates(np.array([[1.0], [0.0], [1.5]]), threshold=2.0) == {1: 0, 2: 0}


def test_make_dirty_counts_scales_and_determinism(dirty):
    records, scales = dirty
    cfg = DirtyConfig()
    counts = Counter(r.kind for r in records)
    assert counts == {"clean": 1000, "exact_duplicate": cfg.exact_duplicates,
                      "near_duplicate": cfg.near_duplicates, "noise": cfg.noise,
                      "blank": cfg.blank, "inverted": cfg.inverted, "not_finite": cfg.not_finite,
                      "out_of_range": cfg.out_of_range, "bad_shape": cfg.bad_shape}
    assert scales == cfg.sources
    assert {r.source for r in records} == set(scales)
    # Popular images: the exact copies repeat at most cfg.popular distinct digits.
    assert len({r.origin for r in records if r.kind == "exact_duplicate"}) <= cfg.popular
    again, _ = make_dirty(digits("train").levels, DirtyConfig(seed=0))
    assert all(a.kind == b.kind and a.source == b.source and
               np.array_equal(a.data, b.data, equal_nan=True) for a, b in zip(records, again))
    other, _ = make_dirty(digits("train").levels, DirtyConfig(seed=1))
    assert [r.kind for r in other] != [r.kind for r in records]


def test_make_dirty_errors():
    with pytest.raises(ValueError, match=r"got \(3, 4\)"):
        make_dirty(np.zeros((3, 4), dtype=int))
    with pytest.raises(ValueError, match="0..16, got 20..20"):
        make_dirty(np.full((2, 8, 8), 20))


def test_clean_removes_exactly_the_injected_records(dirty):
    records, scales = dirty
    result = clean(records, scales)
    report = result.report
    assert report.n_records == len(records) == len(report.kept) + len(report.removed)
    for i, reason in report.removed.items():
        kind = records[i].kind
        if kind in INJECTED:
            assert reason == kind, (i, kind, reason)
        else:
            assert reason in ("exact_duplicate", "near_duplicate"), (i, kind, reason)
            assert records[report.duplicate_of[i]].origin == records[i].origin
            assert report.duplicate_of[i] in report.kept
    assert sorted(records[i].origin for i in report.kept) == list(range(1000))
    counts = report.counts()
    cfg = DirtyConfig()
    for kind in INJECTED:
        assert counts[kind] == getattr(cfg, kind)
    assert counts["exact_duplicate"] + counts["near_duplicate"] == (
        cfg.exact_duplicates + cfg.near_duplicates)
    # The kept images are the real digits (a kept near copy differs in at most 3 pixels).
    train = digits("train").levels.numpy()
    origins = [records[i].origin for i in report.kept]
    diff = (result.levels != train[origins]).reshape(1000, -1).sum(1)
    kinds = [records[i].kind for i in report.kept]
    assert all(d == 0 for d, k in zip(diff, kinds) if k != "near_duplicate")
    assert diff.max() <= 3
    assert result.levels.shape == (1000, 1, 8, 8) and result.levels.dtype == np.int64
    np.testing.assert_array_equal(result.images, (result.levels / 16).astype(np.float32))
    assert result.sources == [records[i].source for i in report.kept]


def test_clean_report_and_unknown_source(real):
    records = [Record("lab", real[0]), Record("mystery", real[1]), Record("lab", real[0]),
               Record("lab", np.full((8, 8), 4))]
    result = clean(records, {"lab": 16})
    assert result.report.removed == {1: "unknown_source", 2: "exact_duplicate", 3: "blank"}
    assert result.report.kept == [0]
    assert result.report.counts() == {"unknown_source": 1, "blank": 1, "exact_duplicate": 1}
    text = result.report.summary()
    assert "records collected: 4" in text and "records kept: 1" in text
    assert "removed, exact duplicate: 1" in text
    empty = clean([Record("mystery", real[0])], {"lab": 16})
    assert empty.levels.shape == (0, 1, 8, 8) and empty.report.kept == []


def test_naive_ingest_keeps_everything_it_can_read(dirty):
    records, scales = dirty
    levels = naive_ingest(records, scales)
    assert levels.shape == (len(records) - DirtyConfig().bad_shape, 1, 8, 8)
    assert levels.dtype == np.int64 and levels.min() >= 0 and levels.max() <= 16

