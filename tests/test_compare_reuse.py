"""`hkt compare` reuses a finished run only when its resolved configuration is identical."""

from __future__ import annotations

import json

import hkt_core
from hkt_core.cli.main import main
from test_train_support import install_user_card


def test_compare_never_reuses_a_run_trained_with_other_settings(isolated_home, tmp_path, capsys):
    card = install_user_card(isolated_home)
    hkt_core.reset_default_manager()
    out = tmp_path / "cmp"
    base = ["compare", card.name, "--methods", "baseline", "--seeds", "0", "--out", str(out)]
    assert main([*base, "--epochs", "1"]) == 0
    summary = out / "baseline-seed0" / "summary.json"
    first = summary.read_bytes()
    capsys.readouterr()
    assert main([*base, "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.epochs: run has 1, now 2" in err
    assert summary.read_bytes() == first  # kept as it was, never shown as the 2-epoch result
    assert main([*base, "--epochs", "1"]) == 0  # identical settings: reused
    assert "reusing" in capsys.readouterr().err and json.loads(summary.read_text())["epochs"] == 1
