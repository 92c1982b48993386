"""Differences between a row and the baseline row, with a 95% Student-t confidence interval.

    paired    >= 2 seeds in common: the mean of the per-seed differences x_s − b_s over the common
              seeds, ± t(0.975, n − 1) · sd / sqrt(n)
    unpaired  fewer than 2 common seeds but >= 2 seeds in each row: difference of the means ± t · se,
              se = sqrt(s_x²/n_x + s_b²/n_b), Welch–Satterthwaite degrees of freedom
    none      a row with one seed: the difference alone, no interval can be given
"""
from __future__ import annotations

import math
import statistics

from scipy import stats


def difference(x: dict[int, float], b: dict[int, float], level: float = 0.95) -> dict:
    """x, b: {seed: value} of the row and of the baseline -> {delta, low, high, n, kind, contains_zero}."""
    common = sorted(set(x) & set(b))
    q = 0.5 + level / 2
    if len(common) >= 2:
        d = [x[s] - b[s] for s in common]
        mean, half = statistics.fmean(d), stats.t.ppf(q, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
        kind, n = "paired", len(d)
    elif len(x) >= 2 and len(b) >= 2:
        vx, vb = statistics.variance(x.values()) / len(x), statistics.variance(b.values()) / len(b)
        mean = statistics.fmean(x.values()) - statistics.fmean(b.values())
        se = math.sqrt(vx + vb)
        df = (vx + vb) ** 2 / (vx ** 2 / (len(x) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else len(x) + len(b) - 2
        half, kind, n = stats.t.ppf(q, df) * se, "unpaired", min(len(x), len(b))
    else:
        if not x or not b:
            return {"delta": None, "low": None, "high": None, "n": 0, "kind": "none", "contains_zero": None}
        mean = statistics.fmean(x.values()) - statistics.fmean(b.values())
        return {"delta": mean, "low": None, "high": None, "n": min(len(x), len(b)), "kind": "none", "contains_zero": None}
    return {"delta": mean, "low": mean - half, "high": mean + half, "n": n, "kind": kind,
            "contains_zero": bool(mean - half <= 0 <= mean + half)}
