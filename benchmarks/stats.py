"""Statistics of the studies: means with 95 % confidence intervals over seeds, paired differences, verdicts.

A claim "holds" only when its confidence interval excludes the opposite, "fails" when it excludes the claim, and is
"inconclusive" otherwise. Intervals are Student-t intervals over seeds (few seeds: the t quantile, not 1.96).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

# Two-sided 95 % Student-t quantiles t_{0.975, df}; beyond the table the normal 1.96 is within 2 %.
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"


def t_quantile(df: int) -> float:
    """t_{0.975, df}, from the table (the next smaller tabulated df for the ones in between: conservative)."""
    if df < 1:
        return math.nan
    known = [d for d in _T975 if d <= df]
    return _T975[max(known)] if df <= 30 else 1.96


def mean_ci(values: Sequence[float | None], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean and 95 % CI (Student t) over the finite values; one value gives an unbounded interval (no spread is
    known). ``bounds``: the quantity's range (a probability's [0, 1], a count's [0, inf)); the interval is clipped
    to it, and ``clipped`` says whether it had to be."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = statistics.fmean(finite)
    if n == 1:
        low, high = -math.inf, math.inf
    else:
        half = t_quantile(n - 1) * statistics.stdev(finite) / math.sqrt(n)
        low, high = mean - half, mean + half
    if bounds is None:
        return {"mean": mean, "ci_low": low, "ci_high": high, "n": n}
    clipped_low, clipped_high = max(low, bounds[0]), min(high, bounds[1])
    clipped = (clipped_low, clipped_high) != (low, high)
    return {"mean": mean, "ci_low": clipped_low, "ci_high": clipped_high, "n": n, "clipped": clipped}


def paired(values: dict[int, float | None], baseline: dict[int, float | None]) -> dict[str, Any]:
    """Mean and CI of ``value - baseline`` over the seeds both have (same seed: same start, same prompts)."""
    seeds = sorted(set(values) & set(baseline))
    diffs = [
        values[s] - baseline[s]
        for s in seeds
        if values[s] is not None and baseline[s] is not None and math.isfinite(values[s] - baseline[s])
    ]
    return mean_ci(diffs)


def verdict_above(ci: dict[str, Any], threshold: float = 0.0) -> str:
    """Holds when the whole interval is above the threshold, fails when the whole interval is below it."""
    if ci["mean"] is None:
        return INCONCLUSIVE
    if ci["ci_low"] > threshold:
        return HOLDS
    if ci["ci_high"] < threshold:
        return FAILS
    return INCONCLUSIVE


def verdict_below(ci: dict[str, Any], threshold: float = 0.0) -> str:
    """The mirror of `verdict_above`: holds when the whole interval is below the threshold."""
    if ci["mean"] is None:
        return INCONCLUSIVE
    if ci["ci_high"] < threshold:
        return HOLDS
    if ci["ci_low"] > threshold:
        return FAILS
    return INCONCLUSIVE


def verdict_not_below(ci: dict[str, Any], margin: float) -> str:
    """Non-inferiority: holds when the interval lies above ``-margin``, fails when it lies below it."""
    return verdict_above(ci, -margin)


def print_intervals(
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
    paired: Mapping[str, Mapping[str, Any]],
    *,
    with_values: bool = False,
) -> None:
    """Print a study's intervals (entries with ``mean``, ``ci95``, ``values``): per name, then paired differences."""
    for name, stats in summary.items():
        print(name, {k: (round(s["mean"], 3), [round(x, 3) for x in s["ci95"]]) for k, s in stats.items()})
    for label, stats in paired.items():
        values = [[round(x, 4) for x in stats["values"]]] if with_values else []
        print(label, round(stats["mean"], 4), [round(x, 4) for x in stats["ci95"]], *values)
