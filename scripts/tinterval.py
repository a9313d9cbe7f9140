"""Mean and 95% confidence half-width (Student's t) of a sample: the one interval the
generated pages (scripts/study.py, scripts/reproduction.py) report."""

import math

# t quantiles (two-sided 95%) by degrees of freedom; a df between entries takes the entry below
# it (a larger t: the interval errs wide), and a df past the table the last entry.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
       10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
       18: 2.101, 19: 2.093, 20: 2.086, 24: 2.064, 29: 2.045}


def t95(df):
    if df in T95:
        return T95[df]
    return T95[max(k for k in T95 if k <= df)] if df > 1 else float("nan")


def mean_ci(values):
    """(mean, 95% half-width) over the finite values; half-width NaN below two values."""
    vals = [v for v in values if v == v and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return m, t95(len(vals) - 1) * sd / math.sqrt(len(vals))
