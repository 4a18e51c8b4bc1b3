"""Small statistics for noisy scores: mean with a confidence interval, and a paired test.

The paired test decides whether a candidate is *really* worse than a baseline on the same lines
(a sign-flip permutation test on per-line differences: no normality assumption, exact for up to
16 lines, 20,000 seeded random flips above that).

    >>> mean_ci([3.0, 4.0, 5.0]).mean
    4.0
    >>> round(paired_worse_pvalue([0.9, 0.8, 0.9, 0.7], [0.9, 0.8, 0.9, 0.7]), 3)
    1.0
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["MeanCI", "is_nan", "mean_ci", "paired_worse_pvalue"]


def is_nan(x: Any) -> bool:
    """True for None, NaN and values that are not numbers."""
    if x is None or isinstance(x, bool):
        return x is None
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True)
class MeanCI:
    """Mean of the valid values, a two-sided t interval, and how many values were NaN."""

    mean: float
    low: float
    high: float
    n: int
    n_nan: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_ci(values: Sequence[Any], confidence: float = 0.95) -> MeanCI:
    """Mean and t-interval over non-NaN values; NaNs are counted in ``n_nan``, never dropped."""
    valid = [float(v) for v in values if not is_nan(v)]
    n_nan = len(values) - len(valid)
    if not valid:
        return MeanCI(math.nan, math.nan, math.nan, 0, n_nan)
    m = float(np.mean(valid))
    if len(valid) < 2:
        return MeanCI(m, math.nan, math.nan, 1, n_nan)
    from scipy import stats

    sem = float(np.std(valid, ddof=1)) / math.sqrt(len(valid))
    half = float(stats.t.ppf((1 + confidence) / 2, len(valid) - 1)) * sem
    return MeanCI(m, m - half, m + half, len(valid), n_nan)


def paired_worse_pvalue(
    candidate: Sequence[float], baseline: Sequence[float], *, seed: int = 0
) -> float:
    """One-sided p-value for "candidate is lower than baseline" on paired values.

    Pairs where either side is NaN are left out (the caller reports them). With no usable pair
    the p-value is 1.0 (no evidence of a regression).
    """
    diffs = np.array(
        [c - b for c, b in zip(candidate, baseline, strict=True) if not (is_nan(c) or is_nan(b))],
        dtype=float,
    )
    diffs = diffs[np.abs(diffs) > 1e-12]
    if diffs.size == 0:
        return 1.0
    observed = diffs.sum()
    if diffs.size <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=diffs.size)))
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((1.0, -1.0), size=(20_000, diffs.size))
    sums = signs @ np.abs(diffs)
    return float(np.mean(sums <= observed + 1e-12))
