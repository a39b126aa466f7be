"""What every method's tests check on real runs, as ``test_fitnet.py`` does for FitNet: an
interrupted and resumed run ends bitwise where an uninterrupted one ends, and two gloo processes
train what one process trains."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch
from safetensors.torch import load_file

import hkt_core
from hkt_core.pairs import PairCard
from test_train_support import Interrupt, hkt_command, make_child, manager_with, stop_after, subprocess_env


def resumes_exactly(card: PairCard, method: str, out: Path, logged: str, **options) -> list:
    """Train ``method`` 2 epochs on ``card``, and again stopped after epoch 1 then resumed: the last
    checkpoints are equal, so are the epochs' ``train_<logged>`` means; the exported child is a plain
    child's state dict. Returns the uninterrupted run."""
    manager = manager_with(card)
    common = dict(manager=manager, epochs=2, seed=4, method_options=options or None)
    a = hkt_core.train(card.name, method, out=out / "A", **common)
    try:
        hkt_core.train(card.name, method, out=out / "B", callbacks=[stop_after(1)], **common)
        raise AssertionError("the callback did not stop the run")
    except Interrupt:
        pass
    b = hkt_core.train(card.name, method, out=out / "B", resume=True, **common)
    ta, tb = load_file(a.path / "last.safetensors"), load_file(b.path / "last.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert [r[f"train_{logged}"] for r in a.metrics] == [r[f"train_{logged}"] for r in b.metrics]
    plain = make_child().state_dict()
    exported = load_file(a.path / "child.safetensors")
    assert exported.keys() == plain.keys() and all(exported[k].shape == plain[k].shape for k in plain)
    return a


def ddp_matches_one_process(card: PairCard, method: str, home: Path, out: Path, *settings: str) -> None:
    """``hkt train`` of ``method`` for one epoch with ``--nproc 2`` (gloo) ends within 1e-5 of one process."""
    (home / "pairs").mkdir(parents=True, exist_ok=True)
    (home / "pairs" / f"{card.name}.toml").write_text(card.to_toml(), encoding="utf-8")
    hkt_core.reset_default_manager()
    args = ["train", card.name, "--method", method, "--epochs", "1", "--seed", "3", "--no-progress",
            *[a for s in settings for a in ("--set", s)]]
    env = subprocess_env(home)
    one = subprocess.run(hkt_command(*args, "--out", str(out / "one")), env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    ddp = subprocess.run(hkt_command(*args, "--nproc", "2", "--out", str(out / "ddp")), env=env,
                         capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = load_file(out / "ddp" / "last.safetensors"), load_file(out / "one" / "last.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
