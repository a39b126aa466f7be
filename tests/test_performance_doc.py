"""docs/performance.md's compiled-vs-eager section is what ``benchmarks/step.py --compiled`` wrote
from the committed docs/results/compile.json (no figure typed by hand)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _step_module():
    spec = importlib.util.spec_from_file_location("benchmark_step", ROOT / "benchmarks" / "step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compile_ratio_section_is_generated_from_the_committed_results():
    step = _step_module()
    results = json.loads((ROOT / "docs" / "results" / "compile.json").read_text(encoding="utf-8"))
    assert {row["method"] for row in results["rows"]} == {"kd", "2hkt"}
    for row in results["rows"]:
        assert row["compiled_over_eager"] == row["compiled_ms"] / row["eager_ms"]
    assert step.render_compile_section(results) in (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
