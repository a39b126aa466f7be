"""Distributed training: 2 CPU processes (gloo) through ``hkt train --nproc 2`` (torchrun) against
one process with the same seed and the same global batch.

Tolerance: 1e-5 absolute on every parameter after two epochs. The global batches are the same
samples (DistributedSampler order, split evenly across ranks) and DDP averages the ranks' mean
gradients, so the two runs differ only by floating-point summation order. The tiny models have
no BatchNorm (whose batch statistics are per rank by design).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import torch
from safetensors.torch import load_file

import hkt_core
from hkt_core.cli.main import main
from test_train_support import hkt_command, install_user_card, subprocess_env

TOLERANCE = 1e-5


@pytest.mark.subprocess
def test_two_gloo_processes_match_one(isolated_home, tmp_path):
    card = install_user_card(isolated_home)
    hkt_core.reset_default_manager()
    args = ["train", card.name, "--method", "baseline", "--epochs", "2", "--seed", "3", "--no-progress"]
    ddp = subprocess.run(hkt_command(*args, "--nproc", "2", "--out", str(tmp_path / "ddp")),
                         env=subprocess_env(isolated_home), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "starting 2 processes (torch.distributed, gloo)" in ddp.stderr
    assert ddp.stdout.count("run folder:") == 1, "only rank 0 reports"

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(before)

    a, b = load_file(tmp_path / "ddp" / "last.safetensors"), load_file(tmp_path / "one" / "last.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= TOLERANCE, f"DDP and single-process weights differ by {worst:.3g}"
    sa = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    sb = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert sa["world_size"] == 2 and sb["world_size"] == 1
    # metrics are reduced over both ranks' shards: the same samples, so the same values
    assert sa["val"]["accuracy"] == pytest.approx(sb["val"]["accuracy"], abs=1e-9)
    assert sa["val"]["loss"] == pytest.approx(sb["val"]["loss"], abs=1e-5)
    # rank 0's set-up failure (the folder exists) stops every rank with the same error
    again = subprocess.run(hkt_command(*args, "--nproc", "2", "--out", str(tmp_path / "ddp")),
                           env=subprocess_env(isolated_home), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0
    lines = [line for line in again.stderr.splitlines() if line.startswith("hkt train: error:")]
    # each rank raises the same one-line error; torchrun may stop the second rank once the first has
    # exited, before it prints, so one or two lines appear, never a different message
    assert 1 <= len(lines) <= 2, again.stderr[-3000:]
    assert all("already exists; pass --resume to continue it or --force" in line for line in lines)
    ma = [r["train_loss"] for r in map(json.loads, (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines())]
    mb = [r["train_loss"] for r in map(json.loads, (tmp_path / "one" / "metrics.jsonl").read_text().splitlines())]
    assert ma == pytest.approx(mb, abs=1e-5)


@pytest.mark.subprocess
def test_a_killed_peer_is_reported_in_a_few_lines_with_the_resume_command(isolated_home, tmp_path):
    from hkt_core.pairs import PairCard
    from test_train_support import card_dict

    data = card_dict("peer-pair")
    data["dataset_options"]["rank1_exits_after"] = 300  # rank 1 dies during its second epoch
    card = PairCard.from_dict(data)
    (isolated_home / "pairs").mkdir(parents=True, exist_ok=True)
    (isolated_home / "pairs" / "peer-pair.toml").write_text(card.to_toml(), encoding="utf-8")
    out = tmp_path / "ddp"
    run = subprocess.run(hkt_command("train", "peer-pair", "--method", "baseline", "--epochs", "4", "--nproc", "2",
                                     "--out", str(out), "--no-progress"),
                         env=subprocess_env(isolated_home), capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    ours = [line for line in run.stderr.splitlines() if line.startswith("hkt train: error:")]
    assert len(ours) == 1, run.stderr[-3000:]
    assert "another process of this distributed run stopped" in ours[0]
    assert f"--out {out} --nproc 2 --resume" in ours[0] and re.search(r"keeps epoch [1-3] of 4", ours[0]), ours[0]
    assert "Traceback" not in run.stderr.split("hkt train: error:")[0], run.stderr[-3000:]
