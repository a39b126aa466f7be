"""Paired comparisons over seeds: is a method's difference to another beyond the seed-to-seed noise?

Two methods trained on the same seeds give per-seed differences ``d_s = a_s - b_s``. The paired
t-test asks whether their mean is 0: ``t = mean(d) / (sd(d) / sqrt(n))`` with ``n - 1`` degrees of
freedom, two-sided p-value ``I_{df / (df + t^2)}(df / 2, 1 / 2)`` (the regularised incomplete beta
function, evaluated here by its continued fraction so the core needs no scipy).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x = {x} must lie in [0, 1]")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_test_p(t: float, df: int) -> float:
    """Two-sided p-value of Student's t statistic ``t`` with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"t_test_p: df = {df} must be >= 1")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_critical(df: int, p: float = 0.05) -> float:
    """The ``|t|`` at which the two-sided p-value is ``p`` (bisection on :func:`t_test_p`)."""
    lo, hi = 0.0, 1.0
    while t_test_p(hi, df) > p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_test_p(mid, df) > p else (lo, mid)
    return 0.5 * (lo + hi)


def detectable_difference(std: float, n: int, p: float = 0.05) -> float:
    """The smallest mean paired difference a paired t-test over ``n`` seeds declares significant at
    ``p`` when the differences spread with standard deviation ``std``: ``t_crit * std / sqrt(n)``."""
    return t_critical(n - 1, p) * std / math.sqrt(n) if n > 1 else math.nan


def paired(a: Mapping[Any, float], b: Mapping[Any, float]) -> dict[str, Any]:
    """``a - b`` over the keys (seeds) both have: ``n``, ``mean``, ``std``, ``wins`` (a ahead),
    ``losses``, ``p`` (two-sided paired t-test; NaN with fewer than 2 seeds; 0 when every
    difference is the same non-zero number) and ``detectable`` (:func:`detectable_difference`)."""
    keys = sorted(set(a) & set(b))
    diffs = [a[k] - b[k] for k in keys]
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    std = statistics.stdev(diffs) if n > 1 else math.nan
    p = math.nan
    if n > 1:
        if std > 0:
            p = t_test_p(mean / (std / math.sqrt(n)), n - 1)
        else:
            p = 1.0 if mean == 0 else 0.0
    return {"n": n, "mean": mean, "std": std, "p": p, "wins": sum(d > 0 for d in diffs),
            "losses": sum(d < 0 for d in diffs), "detectable": detectable_difference(std, n)}


__all__ = ["betainc", "detectable_difference", "paired", "t_critical", "t_test_p"]
