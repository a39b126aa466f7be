"""The quality benchmark's rows of the methods written in one file (attention transfer with its
random-alignment control, DKD): at their papers' settings on the control pair, trained on the
shared recipe, needing no search of their own."""

from __future__ import annotations

import sys
from pathlib import Path

import hkt_core

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality as bench  # noqa: E402
import quality_plan as plan  # noqa: E402

ROWS = ("attention-transfer", "attention-transfer-random", "dkd")


def test_the_rows_are_the_papers_settings_and_the_random_control():
    rows = plan.stage_rows({})
    assert list(rows) == list(ROWS)   # no choice needed: they are not searched
    assert rows["attention-transfer-random"] == ("paper-random", {"method_options": {
        **plan.PAPER_ROWS["attention-transfer"][1]["method_options"], "alignment": "random"}})
    assert plan.RANDOM_CONTROLS["attention-transfer-random"] == "attention-transfer"
    assert plan.searched_for(list(ROWS)) == ["baseline"]
    assert not set(plan.stage_rows({}, "another-pair")) & set(ROWS)
    for row in ROWS:   # every option is one the registered method takes
        method = hkt_core.lookup("methods", plan.METHOD_OF_ROW.get(row, row))
        assert set(rows[row][1]["method_options"]) <= set(method.default_options), row


def test_the_comparison_trains_them_on_the_shared_recipe():
    chosen = {"baseline": {"name": "lr0.1", "config": {"train": {"lr": 0.1}}}}
    tuned = {"pairs": {plan.CONTROL_PAIR: {"seeds": [0], "search": {}, "chosen": chosen}}}
    jobs = bench.final_jobs([plan.CONTROL_PAIR], tuned, [0], [0, 1], list(ROWS))
    assert [(j["row"], j["seed"]) for j in jobs] == [(r, s) for s in (0, 1) for r in ROWS]
    random = next(j for j in jobs if j["row"] == "attention-transfer-random")
    assert random["method"] == "attention-transfer" and random["train"] == {"lr": 0.1}
    assert random["folder"] == "attention-transfer-paper-random-seed0"
    assert random["method_options"]["alignment"] == "random"
    dkd = next(j for j in jobs if j["row"] == "dkd")
    assert dkd["method_options"] == {"alpha": 1.0, "beta": 2.0, "temperature": 4.0, "warmup_epochs": 3}
