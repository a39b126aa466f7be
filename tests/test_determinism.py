"""The determinism contract: the same pair, method, seed and settings give the same weights from
``hkt demo`` and ``hkt compare``, whichever ran first, whatever thread count the calling process
had, with or without worker processes; every child records its parent's ``weights_sha256``."""

from __future__ import annotations

import json

import torch

import hkt_core
from hkt_core.cli.main import main
from hkt_core.train.parents import weights_sha256

from test_train_support import install_user_card

METHODS = ("baseline", "kd", "hkt")


def _results(out):
    runs = {}
    for method in METHODS:
        for seed in range(3):
            folder = out / f"{method}-seed{seed}"
            summary = json.loads((folder / "summary.json").read_text())
            runs[(method, seed)] = (summary["test"]["accuracy"], weights_sha256(folder / "child.safetensors"),
                                    summary["parent"].get("weights_sha256"))
    return runs


def test_demo_and_compare_train_the_same_weights_for_the_same_seeds(tmp_path, monkeypatch, capsys):
    import hkt_core.cli.train_cmd as train_cmd

    threads = torch.get_num_threads()
    results = {}
    try:
        for command, ambient in (("demo", 2), ("compare", 1)):
            home = tmp_path / f"home-{command}"   # a fresh HKT_HOME each: each trains its own parent
            monkeypatch.setenv("HKT_HOME", str(home))
            card = install_user_card(home, delay=0.0)
            hkt_core.reset_default_manager()
            monkeypatch.setattr(train_cmd, "DEMO_PAIR", card.name)
            torch.set_num_threads(ambient)   # what the calling process happens to use does not matter
            out = tmp_path / command
            argv = (["demo", "--out", str(out), "--epochs", "1", "--workers", "2"] if command == "demo" else
                    ["compare", card.name, "--methods", ",".join(METHODS), "--seeds", "0,1,2", "--epochs", "1",
                     "--workers", "1", "--out", str(out)])
            assert main(argv) == 0
            results[command] = _results(out)
            printed = capsys.readouterr().out
            assert "kd - baseline:" in printed and "hkt - baseline:" in printed   # paired tests, both commands
    finally:
        torch.set_num_threads(threads)
    assert results["demo"] == results["compare"]
    parents = {digest for _, _, digest in results["demo"].values() if digest}
    assert len(parents) == 1 and all(results["demo"][(m, s)][2] for m in ("kd", "hkt") for s in range(3))
    assert results["demo"][("baseline", 0)][2] is None      # the baseline has no parent
    compare_md = (tmp_path / "compare" / "compare.md").read_text()
    assert "paired difference to the baseline" in compare_md and "- hkt - baseline:" in compare_md


def test_a_run_trains_with_its_own_thread_count_and_restores_the_callers(tmp_path):
    from test_train_support import manager_with, tiny_card

    manager = manager_with(tiny_card())
    seen = []
    before = torch.get_num_threads()
    run = hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", epochs=1, threads=2,
                         callbacks=[lambda epoch, record: seen.append(torch.get_num_threads())])
    assert seen == [2] and run.config["train"]["threads"] == 2 and torch.get_num_threads() == before
