"""docs/performance.md's generated sections are what the benchmarks wrote from the committed results
(no figure typed by hand): the step table from docs/results/step.json (``benchmarks/step.py``), the
compiled-vs-eager section from docs/results/compile.json (``--compiled``) and the GPU section from
docs/results/gpu.json (``benchmarks/gpu_check.py``; a note that nothing ran on a GPU without it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _step_module(name: str = "step"):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
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


def test_step_section_is_generated_from_the_committed_results():
    step = _step_module()
    results = json.loads((ROOT / "docs" / "results" / "step.json").read_text(encoding="utf-8"))
    rows = {r["step"]: r for r in results["rows"]}
    assert {"kd", "kd-unfolded", "hand", "family-2hkt", "family-3hkt", "family-3hkt-layer1"} <= set(rows)
    for row in rows.values():
        assert row["vs_kd"] == pytest.approx(row["ms"] / rows["kd"]["ms"], rel=1e-12)
        assert row["vs_hand"] == pytest.approx(row["ms"] / rows["hand"]["ms"], rel=1e-12)
    assert results["per_node"]["nodes"] > 100
    assert step.render_step_section(results) in (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")


def test_gpu_section_is_generated_from_gpu_json_or_says_nothing_ran():
    gpu_check = _step_module("gpu_check")
    file = ROOT / "docs" / "results" / "gpu.json"
    results = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    section = gpu_check.render(results)
    assert section in (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    if results is None:
        assert "Not measured yet: no GPU was available" in section
