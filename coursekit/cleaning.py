"""A small data pipeline for image records: validate, normalise, filter, de-duplicate (Chapter 1).

Chapter 1 collects "the same" digits from several sources that store them differently, breaks some
of them the way real collections break, and then cleans the collection step by step:

1. **validate** each record: its shape, finite values, values inside its source's declared range;
2. **normalise**: divide by the source's scale to ``[0, 1]``, then quantise to integer grey levels;
3. **filter** records that are valid but not digits: blank, inverted (ink and paper swapped) and
   pure noise;
4. **de-duplicate**: exact copies (a hash of the quantised levels, so a copy stored at another scale
   is still caught) and near copies (Euclidean distance between levels below a threshold).

``clean`` runs the four steps and returns what survived together with a ``CleaningReport`` that says,
for every removed record, which step removed it and why. ``make_dirty`` builds the messy collection
from real, clean images and records the truth about each record, so that the chapter and the tests
can check that the cleaner removes exactly what was injected.

The thresholds in ``CleaningConfig`` were chosen on the 1,797 real digits: no real digit is blank
(the lowest per-image standard deviation is 0.30 on the ``[0, 1]`` scale), has a mean intensity
above 0.43 or more than 27 % of its pixels at the top level, has fewer than 34 % background
pixels, or lies within distance 5.29 (in grey levels) of another digit; Chapter 1 measures these
numbers.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from coursekit.utils import to_numpy

__all__ = [
    "Record", "CleaningConfig", "CleaningReport", "CleanResult", "DirtyConfig",
    "validate", "normalise", "to_levels", "quality_reason", "exact_duplicates", "near_duplicates",
    "clean", "naive_ingest", "make_dirty",
]

REASONS = ("unknown_source", "bad_shape", "not_finite", "out_of_range", "blank", "inverted",
           "noise", "exact_duplicate", "near_duplicate")


@dataclass
class Record:
    """One collected image, as its source stored it.

    ``kind`` and ``origin`` are the ground truth that ``make_dirty`` writes for the experiment
    ("clean", "duplicate", "noise", ... and the index of the clean image it came from, or -1);
    the cleaner never reads them.
    """

    source: str  # the name of the source that delivered the record
    data: np.ndarray  # the values as stored there, any shape and dtype
    kind: str = "unknown"  # ground truth for experiments only
    origin: int = -1  # index of the clean image this record derives from, or -1


@dataclass
class CleaningConfig:
    """Settings of ``clean``; defaults suit the 8x8 digits with 17 grey levels."""

    shape: tuple[int, ...] = (8, 8)  # the shape every record must have
    num_levels: int = 17  # grey levels after quantisation: 0 .. num_levels-1
    blank_std: float = 0.05  # blank: per-image std on [0, 1] below this (real digits >= 0.30)
    inverted_mean: float = 0.5  # inverted: mean intensity above this (real digits <= 0.43) ...
    inverted_paper: float = 0.3  # ... and this fraction of top-level pixels (real <= 0.27)
    noise_background: float = 0.3  # noise: fraction of level-0 pixels below this (real >= 0.34)
    near_distance: float = 3.0  # near duplicate: L2 distance in levels below this (real >= 5.29)


@dataclass
class CleaningReport:
    """What ``clean`` did: the records it kept and, for each removed one, the reason."""

    n_records: int  # records that came in
    kept: list[int] = field(default_factory=list)  # indices (into the input) that survived
    removed: dict[int, str] = field(default_factory=dict)  # index -> reason (one of REASONS)
    duplicate_of: dict[int, int] = field(default_factory=dict)  # removed copy -> the kept index

    def counts(self) -> dict[str, int]:
        """``{reason: how many records it removed}``, in pipeline order, zeros left out."""
        tally = Counter(self.removed.values())
        return {reason: tally[reason] for reason in REASONS if tally[reason]}

    def summary(self) -> str:
        """A short table in words: records in, removed by reason, kept."""
        lines = [f"records collected: {self.n_records}"]
        lines += [f"  removed, {reason.replace('_', ' ')}: {n}" for reason, n in self.counts().items()]
        lines.append(f"records kept: {len(self.kept)}")
        return "\n".join(lines)


@dataclass
class CleanResult:
    """The cleaned data and the report."""

    levels: np.ndarray  # (M, 1, H, W) int64 grey levels of the kept records
    images: np.ndarray  # (M, 1, H, W) float32 in [0, 1], levels / (num_levels - 1)
    sources: list[str]  # the source of each kept record
    report: CleaningReport


# ---------------------------------------------------------------------------------- the steps

def validate(data, shape: tuple[int, ...], max_value: float) -> str | None:
    """Why a record cannot be used as an image, or ``None`` if it can.

    Args:
        data: the record's values (anything ``np.asarray`` accepts).
        shape: the shape it must have (a record with the same number of values in another
            shape is refused too: silently reshaping is how transposed images get in).
        max_value: the top of the source's scale; values must lie in ``[0, max_value]``.

    Returns:
        ``"bad_shape"``, ``"not_finite"`` (also for values that are not numbers at all),
        ``"out_of_range"`` or ``None``.

    Example:
        >>> validate(np.full((8, 8), 3.0), (8, 8), 16), validate(np.zeros((8, 7)), (8, 8), 16)
        (None, 'bad_shape')
    """
    array = np.asarray(data)
    if array.shape != tuple(shape):
        return "bad_shape"
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        return "not_finite"
    if array.min() < 0 or array.max() > max_value:
        return "out_of_range"
    return None


def normalise(data, max_value: float) -> np.ndarray:
    """Map values on a source's scale ``[0, max_value]`` to float64 in ``[0, 1]``.

    Example:
        >>> normalise(np.array([0, 255]), 255).tolist()
        [0.0, 1.0]
    """
    if not max_value > 0:
        raise ValueError(f"max_value must be > 0, got {max_value}")
    return np.asarray(data, dtype=np.float64) / max_value


def to_levels(images01, num_levels: int) -> np.ndarray:
    """Quantise ``[0, 1]`` intensities to integer levels ``0 .. num_levels-1`` (round to nearest).

    Example:
        >>> to_levels(np.array([0.0, 0.49, 1.0]), 17).tolist()
        [0, 8, 16]
    """
    array = np.asarray(images01, dtype=np.float64)
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"intensities must lie in [0, 1], got min {array.min()}, max {array.max()}")
    return np.rint(array * (num_levels - 1)).astype(np.int64)


def quality_reason(image01: np.ndarray, levels: np.ndarray, config: CleaningConfig) -> str | None:
    """``"blank"``, ``"inverted"`` or ``"noise"`` for a valid record that is not a digit, else ``None``.

    Args:
        image01: the record normalised to ``[0, 1]``.
        levels: the same record quantised.
        config: the thresholds.
    """
    if image01.std() < config.blank_std:
        return "blank"
    # Inverted: white paper, i.e. many pixels at the top level. Uniform noise is bright on
    # average too (mean 0.5) but has few pixels at any one level, so the mean alone would not do.
    top = (levels == config.num_levels - 1).mean()
    if image01.mean() > config.inverted_mean and top >= config.inverted_paper:
        return "inverted"
    if (levels == 0).mean() < config.noise_background:  # digits sit on a mostly empty page
        return "noise"
    return None


def exact_duplicates(levels: np.ndarray) -> dict[int, int]:
    """Exact copies among quantised images: ``{index of a later copy: index of the first}``.

    Hashing the quantised levels (not the raw values) makes the same image delivered by two
    sources at two different scales hash the same.

    Example:
        >>> a = np.zeros((3, 2, 2), dtype=np.int64); a[1, 0, 0] = 5
        >>> exact_duplicates(a)
        {2: 0}
    """
    first, copies = {}, {}
    for i, image in enumerate(np.asarray(levels, dtype=np.int64)):
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        if key in first:
            copies[i] = first[key]
        else:
            first[key] = i
    return copies


def near_duplicates(levels: np.ndarray, threshold: float) -> dict[int, int]:
    """Near copies: ``{index: index of an earlier kept image within L2 distance < threshold}``.

    Greedy in order: an image is dropped if it is closer than ``threshold`` (in grey levels) to
    an image kept before it, so of a group of near copies the first one stays.

    Example:
        >>> a = np.array([[0, 0], [0, 1], [9, 9]])
        >>> near_duplicates(a, threshold=2.0)
        {1: 0}
    """
    x = np.asarray(levels, dtype=np.float64)
    x = x.reshape(len(x), int(np.prod(x.shape[1:])))  # (N, D)
    sq = (x * x).sum(1)
    dist2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T  # (N, N) squared distances
    kept, copies = [], {}
    for i in range(len(x)):
        if kept:
            near = np.flatnonzero(dist2[i, kept] < threshold**2)
            if len(near):
                copies[i] = kept[near[0]]
                continue
        kept.append(i)
    return copies


# ------------------------------------------------------------------------------- the pipeline

def clean(records: list[Record], scales: dict[str, float],
          config: CleaningConfig | None = None) -> CleanResult:
    """Validate, normalise, filter and de-duplicate a collection (the four steps above).

    Args:
        records: the collection, in the order it was gathered (the first of a group of copies
            is the one kept).
        scales: ``{source name: the top of its value scale}`` (16 for raw digit levels, 1.0 for
            intensities, 255 for 8-bit images). A record from an unlisted source is removed.
        config: thresholds (default ``CleaningConfig()``).

    Returns:
        A ``CleanResult`` with the kept images, as levels and as ``[0, 1]`` floats, shaped
        ``(M, 1, *config.shape)``, and the report.

    Example:
        >>> from coursekit.data import digits
        >>> levels = digits("train").levels[:5, 0].numpy()  # (5, 8, 8)
        >>> recs = [Record("lab", x) for x in levels] + [Record("web", levels[0] / 16.0)]
        >>> out = clean(recs, {"lab": 16, "web": 1.0})
        >>> out.levels.shape, out.report.counts()
        ((5, 1, 8, 8), {'exact_duplicate': 1})
    """
    config = config or CleaningConfig()
    report = CleaningReport(n_records=len(records))
    candidates, images01, levels = [], [], []
    for i, record in enumerate(records):
        if record.source not in scales:
            report.removed[i] = "unknown_source"
            continue
        reason = validate(record.data, config.shape, scales[record.source])
        if reason is None:
            image01 = normalise(record.data, scales[record.source])
            image_levels = to_levels(image01, config.num_levels)
            reason = quality_reason(image01, image_levels, config)
        if reason is not None:
            report.removed[i] = reason
            continue
        candidates.append(i)
        images01.append(image01)
        levels.append(image_levels)
    levels = np.stack(levels) if levels else np.zeros((0, *config.shape), dtype=np.int64)
    for reason, copies in (("exact_duplicate", exact_duplicates),
                           ("near_duplicate", lambda x: near_duplicates(x, config.near_distance))):
        found = copies(levels)
        for j, first in found.items():
            report.removed[candidates[j]] = reason
            report.duplicate_of[candidates[j]] = candidates[first]
        keep = [j for j in range(len(candidates)) if j not in found]
        candidates, levels = [candidates[j] for j in keep], levels[keep]
    report.kept = candidates
    levels = levels[:, None].astype(np.int64)  # (M, 1, H, W)
    return CleanResult(levels=levels, images=(levels / (config.num_levels - 1)).astype(np.float32),
                       sources=[records[i].source for i in candidates], report=report)


def naive_ingest(records: list[Record], scales: dict[str, float],
                 config: CleaningConfig | None = None) -> np.ndarray:
    """What a pipeline without cleaning feeds the model: the baseline of Chapter 1's experiment.

    It does only what is needed to get a tensor at all: drops records of the wrong shape or an
    unknown source, replaces non-finite values by 0, clips to the source's range and normalises.
    Nothing is filtered or de-duplicated.

    Returns:
        ``(M, 1, *config.shape)`` int64 levels.
    """
    config = config or CleaningConfig()
    out = []
    for record in records:
        array = np.asarray(record.data)
        if record.source not in scales or array.shape != tuple(config.shape):
            continue
        if not np.issubdtype(array.dtype, np.number):
            continue
        top = scales[record.source]
        array = np.clip(np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=top, neginf=0.0),
                        0, top)
        out.append(to_levels(normalise(array, top), config.num_levels))
    if not out:
        return np.zeros((0, 1, *config.shape), dtype=np.int64)
    return np.stack(out)[:, None]


# --------------------------------------------------------------------- a dirty collection

@dataclass
class DirtyConfig:
    """How ``make_dirty`` breaks a clean set of images; counts are numbers of extra records."""

    sources: dict[str, float] = field(default_factory=lambda: {
        "lab_scans": 16.0, "web_scrape": 1.0, "archive": 255.0})  # name -> top of its scale
    exact_duplicates: int = 300  # copies of popular images, delivered again by any source
    popular: int = 20  # how many distinct images those copies repeat (re-posted content)
    near_duplicates: int = 50  # copies of random images with 3 pixels moved by one grey level
    noise: int = 100  # uniformly random images
    blank: int = 50  # constant images
    inverted: int = 100  # ink and paper swapped
    not_finite: int = 10  # a clean image with some NaN values
    out_of_range: int = 10  # a clean image with some values beyond the source's scale
    bad_shape: int = 10  # a clean image with its last column missing
    seed: int = 0  # seeds all the choices (a private generator)


def _encode(levels: np.ndarray, top: float, num_levels: int) -> np.ndarray:
    """Store levels on a source's scale: raw integer levels, [0, 1] floats or 8-bit integers."""
    if top == num_levels - 1:
        return levels.astype(np.int64)
    if top == 1.0:
        return levels / (num_levels - 1)
    return np.rint(levels * top / (num_levels - 1)).astype(np.int64)


def make_dirty(levels, config: DirtyConfig | None = None,
               num_levels: int = 17) -> tuple[list[Record], dict[str, float]]:
    """Spread clean images over several sources and add duplicates and broken records.

    Each clean image is delivered once by a random source, stored on that source's scale; then
    the extra records of ``config`` are added and everything is shuffled. Every record carries
    its truth (``kind``, ``origin``) so that an experiment can score the cleaner.

    Args:
        levels: ``(N, H, W)`` or ``(N, 1, H, W)`` integer levels of real, clean, distinct images.
        config: what to add (default ``DirtyConfig()``).
        num_levels: grey levels of ``levels``.

    Returns:
        ``(records, scales)``: the shuffled collection and ``{source: top of its scale}``.

    Example:
        >>> from coursekit.data import digits
        >>> recs, scales = make_dirty(digits("train").levels[:100])
        >>> len(recs), sum(r.kind == "clean" for r in recs)
        (730, 100)
    """
    config = config or DirtyConfig()
    x = to_numpy(levels)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or len(x) == 0:
        raise ValueError(f"levels must be (N, H, W) or (N, 1, H, W) with N >= 1, got {x.shape}")
    if int(x.min()) < 0 or int(x.max()) >= num_levels:
        raise ValueError(f"levels must lie in 0..{num_levels - 1}, got {x.min()}..{x.max()}")
    x = x.astype(np.int64)
    rng = np.random.default_rng(config.seed)
    names = list(config.sources)
    top = config.sources
    n, h, w = x.shape

    def pick_source() -> str:
        return names[rng.integers(len(names))]

    records = []
    for i in range(n):
        s = pick_source()
        records.append(Record(s, _encode(x[i], top[s], num_levels), "clean", i))
    popular = rng.choice(n, size=min(config.popular, n), replace=False)
    for i in rng.choice(popular, size=config.exact_duplicates):
        s = pick_source()
        records.append(Record(s, _encode(x[i], top[s], num_levels), "exact_duplicate", int(i)))
    for i in rng.integers(n, size=config.near_duplicates):
        copy = x[i].copy()
        pixels = rng.choice(h * w, size=3, replace=False)  # 3 pixels one level up or down
        flat = copy.reshape(-1)
        step = np.where(flat[pixels] == 0, 1, np.where(flat[pixels] == num_levels - 1, -1,
                                                       rng.choice([-1, 1], size=3)))
        flat[pixels] += step  # distance sqrt(3) < near_distance from the original
        s = pick_source()
        records.append(Record(s, _encode(copy, top[s], num_levels), "near_duplicate", int(i)))
    for _ in range(config.noise):
        s = pick_source()
        records.append(Record(s, _encode(rng.integers(num_levels, size=(h, w)), top[s],
                                         num_levels), "noise"))
    for _ in range(config.blank):
        s = pick_source()
        value = int(rng.integers(num_levels))
        records.append(Record(s, _encode(np.full((h, w), value), top[s], num_levels), "blank"))
    for i in rng.integers(n, size=config.inverted):
        s = pick_source()
        records.append(Record(s, _encode(num_levels - 1 - x[i], top[s], num_levels), "inverted",
                              int(i)))
    for i in rng.integers(n, size=config.not_finite):
        s = pick_source()
        broken = _encode(x[i], top[s], num_levels).astype(np.float64)
        broken.reshape(-1)[rng.choice(h * w, size=4, replace=False)] = np.nan
        records.append(Record(s, broken, "not_finite", int(i)))
    for i in rng.integers(n, size=config.out_of_range):
        s = pick_source()
        broken = _encode(x[i], top[s], num_levels).astype(np.float64)
        broken.reshape(-1)[rng.choice(h * w, size=4, replace=False)] = 2.0 * top[s]
        records.append(Record(s, broken, "out_of_range", int(i)))
    for i in rng.integers(n, size=config.bad_shape):
        s = pick_source()
        records.append(Record(s, _encode(x[i], top[s], num_levels)[:, :-1], "bad_shape", int(i)))
    order = rng.permutation(len(records))
    return [records[j] for j in order], dict(top)
