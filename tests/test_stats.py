"""The paired t-test of the demo against references: scipy where installed, and exact small cases."""

from __future__ import annotations

import math
import statistics

import pytest

from hkt_core.stats import betainc, detectable_difference, paired, t_critical, t_test_p


def test_betainc_closed_forms():
    # I_x(1, 1) = x, I_x(a, 1) = x^a, I_x(1, b) = 1 - (1 - x)^b
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert betainc(1, 1, x) == pytest.approx(x, abs=1e-13)
        assert betainc(2.5, 1, x) == pytest.approx(x ** 2.5, abs=1e-13)
        assert betainc(1, 3.0, x) == pytest.approx(1 - (1 - x) ** 3, abs=1e-13)
    with pytest.raises(ValueError, match="must lie in"):
        betainc(1, 1, 1.5)


def test_t_test_p_closed_forms():
    # df = 1 is the Cauchy distribution: p = 1 - 2 atan(|t|) / pi; df = 2: p = 1 - |t| / sqrt(2 + t^2)
    for t in (0.0, 0.3, 1.0, 4.0, -12.0):
        assert t_test_p(t, 1) == pytest.approx(1 - 2 * math.atan(abs(t)) / math.pi, rel=1e-12, abs=1e-15)
        assert t_test_p(t, 2) == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), rel=1e-12, abs=1e-15)
    assert t_test_p(math.inf, 5) == 0.0


def test_paired_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    a = {0: 95.1, 1: 96.3, 2: 94.0, 3: 95.5, 4: 96.9, 5: 95.2, 7: 90.0}
    b = {0: 94.6, 1: 96.5, 2: 93.1, 3: 94.9, 4: 95.8, 5: 95.2, 6: 99.0}
    got = paired(a, b)
    seeds = [0, 1, 2, 3, 4, 5]
    diffs = [a[s] - b[s] for s in seeds]
    assert got["n"] == 6 and got["wins"] == 4 and got["losses"] == 1
    assert got["mean"] == pytest.approx(sum(diffs) / 6)
    assert got["p"] == pytest.approx(float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue),
                                     rel=1e-9)
    for df in (1, 2, 3, 9, 30):
        for t in (0.2, 1.7, 3.25, 8.0):
            assert t_test_p(t, df) == pytest.approx(2 * float(stats.t.sf(t, df)), rel=1e-9)
        assert t_critical(df) == pytest.approx(float(stats.t.ppf(0.975, df)), rel=1e-9)
    sd = statistics.stdev(diffs)
    assert got["detectable"] == pytest.approx(float(stats.t.ppf(0.975, 5)) * sd / math.sqrt(6), rel=1e-9)
    assert detectable_difference(sd, 6) == pytest.approx(got["detectable"])


def test_paired_edge_cases():
    assert math.isnan(paired({0: 1.0}, {0: 0.5})["p"])
    assert paired({0: 1.0, 1: 2.0}, {0: 0.0, 1: 1.0})["p"] == 0.0  # the same gain on every seed
    assert paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})["p"] == 1.0
    assert paired({}, {0: 1.0})["n"] == 0
