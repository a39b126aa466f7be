"""The quality benchmark's plan: equal search budgets per pair, the order of the search, HKT + KD
built on KD's choice, and a choice made only from complete searches of today's space."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality as bench  # noqa: E402
import quality_plan as plan  # noqa: E402


@pytest.mark.parametrize("pair", plan.PAIRS)
def test_every_pair_gives_every_method_the_same_budget(pair):
    space = plan.search_for(pair)
    assert set(plan.MAIN_METHODS) <= set(space)
    assert {len(configs) for configs in space.values()} == {plan.CONFIGS}


def test_a_pair_may_bring_its_own_baseline_search():
    space = plan.search_for("hetero-digits-cnn-vit")
    assert space["baseline"] == plan.BASELINE_SEARCH["hetero-digits-cnn-vit"]
    assert space["kd"] == plan.SEARCH["kd"]
    assert plan.search_for(plan.CONTROL_PAIR)["baseline"] == plan.SEARCH["baseline"]


def test_the_search_runs_the_baseline_first_and_built_on_rows_last():
    assert bench.tune_phases(["hkt-kd", "kd", "baseline", "hkt"]) == [["baseline"], ["kd", "hkt"], ["hkt-kd"]]
    assert bench.tune_phases(["hkt-kd"]) == [["hkt-kd"]]


def _tuned(chosen):
    return {"pairs": {"p": {"seeds": [0], "search": {}, "chosen": chosen}}}


def test_hkt_kd_starts_from_the_recipe_and_kd_s_choice():
    chosen = {"baseline": {"config": {"train": {"lr": 0.1}}},
              "kd": {"config": {"train": {"kd_temperature": 2.0, "kd_weight": 0.9}}}}
    tuned = _tuned(chosen)
    assert bench.recipe_of(tuned, "p", "baseline") == {}
    assert bench.recipe_of(tuned, "p", "hkt") == {"lr": 0.1}
    assert bench.recipe_of(tuned, "p", "hkt-kd") == {"lr": 0.1, "kd_temperature": 2.0, "kd_weight": 0.9}
    with pytest.raises(SystemExit, match="tune kd first"):
        bench.recipe_of(_tuned({"baseline": chosen["baseline"]}), "p", "hkt-kd")
    with pytest.raises(SystemExit, match="--tune --methods baseline"):
        bench.recipe_of(_tuned({}), "p", "kd")


def _result(method, config, seed, val):
    return {"pair": plan.CONTROL_PAIR, "row": method, "config": config, "seed": seed, "val": val, "test": val,
            "train_seconds": 1.5}


def test_the_choice_is_the_best_mean_validation_over_complete_searches():
    space = plan.search_for(plan.CONTROL_PAIR)["kd"]
    names = list(space)
    results = [_result("kd", n, s, v) for s in (0, 1) for n, v in zip(names, (0.90, 0.95, 0.92))]
    tuned = bench.choose(results[:-1], {"pairs": {}}, [0, 1])  # one run missing: no choice yet
    assert "kd" not in tuned["pairs"][plan.CONTROL_PAIR]["chosen"]
    tuned = bench.choose(results, {"pairs": {}}, [0, 1])
    chosen = tuned["pairs"][plan.CONTROL_PAIR]["chosen"]["kd"]
    assert chosen["name"] == names[1] and chosen["val_mean"] == pytest.approx(95.0)


def test_a_configuration_that_diverged_is_a_result_and_is_never_chosen(capsys):
    names = list(plan.search_for(plan.CONTROL_PAIR)["kd"])
    results = [_result("kd", n, s, v) for s in (0, 1) for n, v in zip(names, (0.90, 0.95, 0.92))]
    diverged = {**results[4], "error": "TrainingDiverged: the training loss is nan", "diverged": True}
    del diverged["val"], diverged["test"]
    tuned = bench.choose([*results[:4], diverged, results[5]], {"pairs": {}}, [0, 1])
    entry = tuned["pairs"][plan.CONTROL_PAIR]
    assert entry["search"]["kd"][names[1]]["diverged_seeds"] == [1]
    assert entry["chosen"]["kd"]["name"] == names[2]   # the best of those that ran on every seed
    # a rerun that trains on that seed clears the mark
    again = bench.choose([results[4]], tuned, [0, 1])["pairs"][plan.CONTROL_PAIR]
    assert "diverged_seeds" not in again["search"]["kd"][names[1]] and again["chosen"]["kd"]["name"] == names[1]
    # in the search a divergence is reported, not failed; in the comparison it is a failure
    assert bench._report_failures([diverged], print, search=True) == 0
    assert "diverged (not chosen)" in capsys.readouterr().out
    assert bench._report_failures([diverged], print) == 1
    # every configuration diverged: no choice
    alone = {**diverged, "seed": 0}
    none = bench.choose([{**alone, "config": n} for n in names], {"pairs": {}}, [0])
    assert "kd" not in none["pairs"][plan.CONTROL_PAIR]["chosen"]


def test_a_search_on_other_seeds_or_with_stale_names_is_not_mixed_in():
    stale = {"pairs": {plan.CONTROL_PAIR: {"seeds": [0], "chosen": {}, "search": {
        "kd": {"an-old-name": {"seeds": [0], "val": [99.9], "test": [99.9]}}}}}}
    names = list(plan.search_for(plan.CONTROL_PAIR)["kd"])
    # the same seed: the stale name is ignored, today's three configurations decide
    tuned = bench.choose([_result("kd", n, 0, v) for n, v in zip(names, (0.5, 0.6, 0.7))], stale, [0])
    assert tuned["pairs"][plan.CONTROL_PAIR]["chosen"]["kd"]["name"] == names[2]
    # other seeds: the earlier search is started anew
    tuned = bench.choose([_result("kd", names[0], 1, 0.5)], stale, [1])
    assert tuned["pairs"][plan.CONTROL_PAIR]["search"] == {
        "kd": {names[0]: {"seeds": [1], "val": [50.0], "test": [50.0], "train_seconds": [1.5]}}}


def test_the_benchmark_runs_end_to_end_in_quick_mode(tmp_path, capsys, monkeypatch):
    """Parent, the search in its three phases and the comparison of one heterogeneous pair, shrunk
    (1 seed, 2 epochs), in this process; nothing is written outside ``--out``."""
    monkeypatch.setenv("HKT_HOME", str(tmp_path / "home"))
    tuned_before, results_before = plan.TUNED_FILE.read_bytes(), plan.RESULTS_FILE.read_bytes()
    code = bench.main(["--quick", "--no-write", "--workers", "1", "--pairs", "hetero-digits-vit-cnn",
                       "--out", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0, out
    printed = [line for line in out.splitlines() if line.startswith("{")]
    rows = json.loads(printed[-1])["hetero-digits-vit-cnn"]
    assert set(rows) == {*plan.MAIN_METHODS, *plan.variants({})}  # no multi-stage rows: not a STAGE_PAIRS pair
    assert all(len(v) == 1 and 0.0 <= v[0] <= 100.0 for v in rows.values())
    folders = {p.name for p in (tmp_path / "runs" / "hetero-digits-vit-cnn").iterdir()}
    assert "parent-seed0" in folders and "hkt-kd-paper-seed0" in folders
    assert plan.TUNED_FILE.read_bytes() == tuned_before and plan.RESULTS_FILE.read_bytes() == results_before


def test_the_multi_stage_rows_follow_the_chosen_configurations():
    chosen = {"baseline": {"name": "lr0.1", "config": {"train": {"lr": 0.1}}},
              "kd": {"name": "T4", "config": {"train": {"kd_temperature": 4.0}}},
              "hkt": {"name": "task", "config": {"hkt": {"alphas": [0.1, 0.8, 0.1]}}},
              "fitnet": {"name": "hint1", "config": plan.SEARCH["fitnet"]["hint1"]},
              "fitnet-kd": {"name": "hint3", "config": plan.SEARCH["fitnet-kd"]["hint3"]}}
    rows = plan.stage_rows(chosen)
    assert list(rows) == list(plan.STAGE_ROWS)
    assert rows["hkt-3"][1] == {"hkt": {"alphas": [0.1, 0.8, 0.1]}, "card": {"stages": 3}}
    assert rows["hkt-3-random"][1]["method_options"] == {"alignment": "random"}
    assert rows["fitnet-random"] == ("hint1-random", {**plan.SEARCH["fitnet"]["hint1"], "method_options": {
        "hint_weight": 1, "alignment": "random"}})
    tuned = {"pairs": {plan.CONTROL_PAIR: {"seeds": [0], "search": {}, "chosen": chosen}}}
    jobs = bench.final_jobs([plan.CONTROL_PAIR], tuned, [0, 1], [0, 1], ["hkt-3-random", "fitnet-kd", "kd"])
    assert [(j["row"], j["seed"]) for j in jobs] == [(r, s) for s in (0, 1) for r in ("kd", "hkt-3-random", "fitnet-kd")]
    spec = next(j for j in jobs if j["row"] == "hkt-3-random")
    assert spec["method"] == "hkt" and spec["stages"] == 3 and spec["folder"] == "hkt-tuned-3stages-random-seed0"
    assert next(j for j in jobs if j["row"] == "fitnet-kd")["train"] == {"lr": 0.1, "kd_temperature": 4.0}
    assert plan.searched_for(["fitnet-random", "hkt-3"]) == ["baseline", "hkt", "fitnet"]
    with pytest.raises(SystemExit, match="no tuned configuration for fitnet"):
        bench.final_jobs([plan.CONTROL_PAIR], {"pairs": {plan.CONTROL_PAIR: {"chosen": {
            k: chosen[k] for k in ("baseline", "hkt")}}}}, [0], [0], ["fitnet-random"])


def test_a_lower_is_better_metric_is_chosen_by_its_lowest_validation_mean():
    """A pair whose task's primary metric is an error (optical flow's EPE) is searched downwards; the
    metric is recorded with the pair, and kept as measured (pixels, not %)."""
    names = list(plan.search_for(plan.CONTROL_PAIR)["kd"])
    results = [{**_result("kd", n, 0, v), "metric": "epe", "higher_is_better": False}
               for n, v in zip(names, (2.5, 1.5, 2.0))]
    entry = bench.choose(results, {"pairs": {}}, [0])["pairs"][plan.CONTROL_PAIR]
    assert entry["chosen"]["kd"]["name"] == names[1] and entry["chosen"]["kd"]["val_mean"] == pytest.approx(1.5)
    assert entry["metric"] == "epe" and entry["higher_is_better"] is False
    assert bench.scale("epe") == 1.0 and bench.scale("dice") == bench.scale("accuracy") == bench.scale(None) == 100.0


def test_the_segmentation_pair_brings_its_own_kd_search_and_is_3hkt_on_its_card():
    space = plan.search_for(plan.SEG_PAIR)
    assert space["kd"] == plan.PAIR_SEARCH[plan.SEG_PAIR]["kd"] and space["hkt"] == plan.SEARCH["hkt"]
    assert {len(c) for c in space.values()} == {plan.CONFIGS}
    # the card is 3HKT at fixed points: hkt-3 would repeat hkt's runs, so its random control controls hkt
    assert plan.random_controls(plan.SEG_PAIR)["hkt-3-random"] == "hkt"
    assert plan.random_controls(plan.CONTROL_PAIR) == plan.RANDOM_CONTROLS
    chosen = {"baseline": {"name": "lr0.003", "config": {"train": {"lr": 0.003}}},
              "kd": {"name": "T1-w0.5", "config": space["kd"]["T1-w0.5"]},
              "hkt": {"name": "paper", "config": {"hkt": {}}}, "hkt-kd": {"name": "paper", "config": {"hkt": {}}},
              "fitnet": {"name": "hint1", "config": space["fitnet"]["hint1"]},
              "fitnet-kd": {"name": "hint1", "config": space["fitnet-kd"]["hint1"]}}
    tuned = {"pairs": {plan.SEG_PAIR: {"seeds": [0], "search": {}, "chosen": chosen}}}
    jobs = bench.final_jobs([plan.SEG_PAIR], tuned, [0], [0], None)
    rows = {j["row"] for j in jobs}
    assert {"hkt-3", "hkt-4", "dkd"}.isdisjoint(rows)
    assert {"hkt-3-random", "fitnet-random", "attention-transfer", "attention-transfer-random"} <= rows


#: every row of the segmentation pair (none needs more than --quick to be checked)
SEG_ROWS = ("baseline", "kd", "hkt", "hkt-kd", "hkt-3-random", "fitnet", "fitnet-random", "fitnet-kd",
            "attention-transfer", "attention-transfer-random")


def test_every_row_of_the_segmentation_pair_runs_in_quick_mode(tmp_path, capsys, monkeypatch):
    """The segmentation pair's parent, its search and every row of its comparison, shrunk (1 seed, 2
    epochs, 16 training images), in this process; the rows are scored in global Dice (%)."""
    monkeypatch.setenv("HKT_HOME", str(tmp_path / "home"))
    code = bench.main(["--quick", "--no-write", "--workers", "1", "--pairs", plan.SEG_PAIR,
                       "--methods", ",".join(SEG_ROWS), "--out", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])[plan.SEG_PAIR]
    assert set(rows) == set(SEG_ROWS)
    assert all(len(v) == 1 and 0.0 <= v[0] <= 100.0 for v in rows.values())
    summaries = [json.loads(f.read_text()) for f in (tmp_path / "runs" / plan.SEG_PAIR).glob("*/summary.json")]
    assert summaries and {s["primary_metric"] for s in summaries} == {"dice"}
