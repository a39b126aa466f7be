"""docs/alignment.md sends readers to the measured heterogeneous results instead of quoting them:
its section on whether heterogeneous HKT helps names every shipped heterogeneous pair, links
docs/RESULTS.md (generated from docs/results/quality.json) and types no accuracy by hand."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality_plan as plan  # noqa: E402


def test_the_alignment_doc_points_to_the_generated_results():
    doc = (ROOT / "docs" / "alignment.md").read_text(encoding="utf-8")
    section = doc[doc.index("## 9. Does heterogeneous HKT help?"):]
    assert "(RESULTS.md)" in section
    for pair in plan.HETERO_PAIRS:
        assert f"`{pair}`" in section, pair
    assert not re.findall(r"\d+\.\d+ ?%|\d+\.\d+ points|p = 0\.\d+", section)
