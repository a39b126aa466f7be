"""docs/results/inhernet.json has the promised schema and every row of the digits comparison, and
the measurement section of docs/inhernet.md is generated from it. Nothing is trained here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import digits_inheritance as bench  # noqa: E402

DATA = json.loads(bench.RESULTS_FILE.read_text())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def test_the_schema_of_the_results_file():
    assert set(DATA) == {"command", "settings", "seconds", "rows"}
    assert DATA["command"] == bench.COMMAND
    assert isinstance(DATA["seconds"], float) and DATA["seconds"] > 0
    s = DATA["settings"]
    for key in ("train_size", "test_size", "batch", "parent_width", "parent_epochs", "extra_epochs",
                "fine_tune_epochs", "seed", "threads"):
        assert _is_int(s[key]) and s[key] >= 0, key
    assert s["train_size"] + s["test_size"] == 1797  # sklearn digits
    assert all(isinstance(s[k], float) and 0 < s[k] < 1 for k in ("lr", "fine_tune_lr"))
    assert all(isinstance(b, float) and 0 < b < 1 for b in s["budgets"])
    assert all(_is_int(e) and e > 0 for e in s["scratch_epochs"])
    for row in DATA["rows"]:
        assert set(row) == {"network", "budget", "width", "parameters", "epochs", "seed", "test_accuracy"}, row
        assert row["network"] in ("parent", "inherited", "scratch"), row
        assert _is_int(row["parameters"]) and row["parameters"] > 0, row
        assert _is_int(row["epochs"]) and row["epochs"] >= 0, row
        assert row["seed"] == s["seed"], row
        assert isinstance(row["test_accuracy"], float) and 0.0 <= row["test_accuracy"] <= 1.0, row
        # an accuracy over the test set is a whole number of correct samples
        correct = row["test_accuracy"] * s["test_size"]
        assert abs(correct - round(correct)) < 1e-3, row
        assert (row["width"] is None) if row["network"] == "inherited" else _is_int(row["width"]), row
        assert (row["budget"] is None) == (row["network"] == "parent"), row


def test_every_row_is_present_once():
    s = DATA["settings"]
    expected = {("parent", None, s["parent_epochs"]), ("parent", None, s["parent_epochs"] + s["extra_epochs"])}
    for budget in s["budgets"]:
        expected |= {("inherited", budget, 0), ("inherited", budget, s["fine_tune_epochs"])}
        expected |= {("scratch", budget, e) for e in s["scratch_epochs"]}
    keys = [(r["network"], r["budget"], r["epochs"]) for r in DATA["rows"]]
    assert sorted(keys, key=str) == sorted(expected, key=str)


def test_sizes_follow_the_budgets():
    s = DATA["settings"]
    parent = bench.find(DATA, "parent", s["parent_epochs"])["parameters"]
    for budget in s["budgets"]:
        inherited = bench.find(DATA, "inherited", 0, budget)
        assert inherited["parameters"] == bench.find(DATA, "inherited", s["fine_tune_epochs"], budget)["parameters"]
        assert inherited["parameters"] <= budget * parent * 1.05
        for epochs in s["scratch_epochs"]:  # the widest scratch CNN no larger than the inherited child
            scratch = bench.find(DATA, "scratch", epochs, budget)
            assert scratch["parameters"] <= inherited["parameters"] and scratch["width"] < s["parent_width"]


def test_the_doc_is_generated_from_the_json():
    text = bench.DOC.read_text()
    assert text.count(bench.BEGIN) == text.count(bench.END) == 1
    assert bench.render(text, DATA) == text, f"run {bench.COMMAND} --report-only"
