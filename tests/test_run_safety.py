"""Run folders keep their work: locks, checksums, sane checkpoints, recorded resumes, export guards."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import hkt_core
from hkt_core.cli.main import main
from hkt_core.config import read_toml
from hkt_core.errors import CheckpointError, ConfigError
from hkt_core.train.identity import read_history
from hkt_core.train.methods import BaselineMethod
from hkt_core.train.trainer import TrainingDiverged
from test_train_support import Interrupt, install_user_card, manager_with, tiny_card
from test_train_support import stop_after as _stop_after


class InfRunningVarInEpochTwo(BaselineMethod):
    """The loss stays finite, but a BatchNorm running variance becomes inf in epoch 2."""

    calls = 0

    def training_step(self, inputs, target):
        InfRunningVarInEpochTwo.calls += 1
        if InfRunningVarInEpochTwo.calls > 8:
            with torch.no_grad():
                self.ctx.child.stem[1].running_var.fill_(float("inf"))
        return super().training_step(inputs, target)


class StopsInFirstEpoch(BaselineMethod):
    """Killed in the middle of epoch 1, before any checkpoint."""

    def training_step(self, inputs, target):
        raise Interrupt


@pytest.fixture
def manager():
    InfRunningVarInEpochTwo.calls = 0
    return manager_with(tiny_card(), tiny_card("tiny-bn", batchnorm=True),
                        methods={"inf-buffer": InfRunningVarInEpochTwo, "stops": StopsInFirstEpoch})


def _fit_unchecked(manager, pair: str, method: str, **options):
    """Train without the pre-flight: these methods misbehave on purpose, in its one step too."""
    from hkt_core.train.api import resolve
    from hkt_core.train.trainer import Trainer

    spec = resolve(pair, method, manager=manager, **options)
    spec.preflight = False
    return Trainer(spec).fit()


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# -- divergence and resume -----------------------------------------------------------------------

def test_non_finite_buffer_is_never_committed(manager, tmp_path):
    folder = tmp_path / "r"
    with pytest.raises(TrainingDiverged, match=r"network's state \(stem\.1\.running_var\).*epoch 1\) is kept"):
        _fit_unchecked(manager, "tiny-bn", "inf-buffer", out=folder, epochs=3)
    assert json.loads((folder / "state.json").read_text())["epoch"] == 1
    assert all(bool(torch.isfinite(v).all()) for v in load_file(folder / "last.safetensors").values())


def test_huge_weights_count_as_divergence():
    from hkt_core.train.integrity import insane_tensors

    assert insane_tensors({"w": torch.full((3,), 1e28), "ok": torch.ones(2), "steps": torch.tensor([2**40])}) == ["w"]
    assert insane_tensors({"w": torch.tensor([1.0, float("nan")])}) == ["w"]


def test_resume_with_a_changed_lr_grad_clip_and_weight_decay_is_recorded(manager, tmp_path):
    folder = tmp_path / "r"
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=3, callbacks=[_stop_after(1)])
    run = hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=3, lr=0.01, resume=True,
                         settings=["train.grad_clip=1.0", "train.weight_decay=0.001"])
    history = read_history(folder)
    assert history == [{"event": "resume", "epoch": 1, "time": history[0]["time"],
                        "changes": {"train.grad_clip": {"from": 0, "to": 1.0}, "train.lr": {"from": 0.05, "to": 0.01},
                                    "train.weight_decay": {"from": 0, "to": 0.001}}}]
    config = read_toml(folder / "config.toml")["train"]
    assert (config["lr"], config["grad_clip"], config["weight_decay"]) == (0.01, 1.0, 0.001)
    state = json.loads((folder / "state.json").read_text())
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 0.001
    assert state["optimizer"]["param_groups"][1]["weight_decay"] == 0.0  # biases stay undecayed
    assert [r["lr"] for r in run.metrics][1] == pytest.approx(0.5 * 0.01 * (1 + math.cos(math.pi / 3)))
    # the next resume compares against the recorded settings: no new change, no new record
    hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=3, lr=0.01, resume=True,
                   settings=["train.grad_clip=1.0", "train.weight_decay=0.001"])
    assert len(read_history(folder)) == 1


def test_a_parent_resumed_with_other_settings_is_not_published_to_the_cache(manager, tmp_path, isolated_home):
    folder = tmp_path / "parent"
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-pair", "parent", manager=manager, out=folder, epochs=2, callbacks=[_stop_after(1)])
    run = hkt_core.train("tiny-pair", "parent", manager=manager, out=folder, epochs=2, lr=0.01, resume=True)
    assert run.summary and read_history(folder)
    assert not (isolated_home / "parents").exists() or not any((isolated_home / "parents").iterdir())


def test_run_stopped_before_its_first_checkpoint_resumes_cleanly(manager, tmp_path, capsys):
    folder = tmp_path / "r"
    with pytest.raises(Interrupt):
        _fit_unchecked(manager, "tiny-pair", "stops", out=folder, epochs=2)
    assert (folder / "config.toml").is_file() and not (folder / "state.json").exists()
    orphan = folder / ".last.safetensors.next.abc123.tmp"
    orphan.write_bytes(b"half a file")
    run = hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=2, resume=True)
    assert "stopped before its first checkpoint: starting it from the beginning" in capsys.readouterr().err
    assert run.summary["epochs"] == 2 and not orphan.exists()


def test_force_removes_orphaned_temporaries(manager, tmp_path):
    folder = tmp_path / "r"
    hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=1)
    orphan = folder / ".state.json.x1y2.tmp"
    orphan.write_text("{")
    hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=1, force=True)
    assert not orphan.exists()


# -- checksums -----------------------------------------------------------------------------------

@pytest.fixture
def user_pair(isolated_home):
    card = install_user_card(isolated_home)
    hkt_core.reset_default_manager()
    return card


@pytest.fixture
def finished(user_pair, tmp_path):
    assert main(["train", user_pair.name, "--method", "baseline", "--epochs", "2", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    return tmp_path / "run"


def _flip_a_weight_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor's data: still a readable safetensors file
    path.write_bytes(bytes(data))


def test_state_records_a_sha256_of_each_tensor_file(finished):
    from hkt_core.train.integrity import sha256_file

    files = json.loads((finished / "state.json").read_text())["files"]
    assert set(files) == {"child.safetensors", "last.safetensors", "optimizer.safetensors"}
    assert all(files[name] == sha256_file(finished / name) for name in files)


def test_bit_flipped_or_foreign_weights_are_refused_by_eval_and_export(finished, tmp_path, capsys, user_pair):
    capsys.readouterr()
    _flip_a_weight_byte(finished / "child.safetensors")
    for argv in (["eval", str(finished)], ["export", str(finished)]):
        assert main(argv) == 2
        err = _one_line(capsys)
        assert "child.safetensors does not match the SHA-256 recorded" in err
    assert main(["train", user_pair.name, "--method", "baseline", "--epochs", "1", "--out", str(tmp_path / "other"),
                 "--no-progress"]) == 0
    (finished / "child.safetensors").write_bytes((tmp_path / "other" / "child.safetensors").read_bytes())
    capsys.readouterr()
    assert main(["eval", str(finished)]) == 2
    assert "belongs to another run" in _one_line(capsys)


def test_resume_refuses_a_bit_flipped_checkpoint(manager, tmp_path):
    folder = tmp_path / "r"
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=2, callbacks=[_stop_after(1)])
    _flip_a_weight_byte(folder / "optimizer.safetensors")
    with pytest.raises(CheckpointError, match="optimizer.safetensors does not match the SHA-256"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=2, resume=True)


def test_folder_written_before_checksums_loads_with_one_warning(finished, capsys):
    state = json.loads((finished / "state.json").read_text())
    del state["files"]
    (finished / "state.json").write_text(json.dumps(state))
    capsys.readouterr()
    assert main(["eval", str(finished)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "written before hkt recorded checksums" in warnings[0]


def test_cached_parent_is_verified(manager, tmp_path, isolated_home, capsys):
    hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "kd1", epochs=1)
    (cached,) = (isolated_home / "parents").iterdir()
    state = (cached / "state.json").read_text()
    assert "child.safetensors" in json.loads(state)["files"]
    (cached / "state.json").unlink()  # as hkt wrote caches before checksums existed
    capsys.readouterr()
    hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "kd-old", epochs=1)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "written before hkt recorded checksums" in warnings[0]
    (cached / "state.json").write_text(state)
    _flip_a_weight_byte(cached / "child.safetensors")
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "kd2", epochs=1)
    assert not (tmp_path / "kd2").exists() or not (tmp_path / "kd2" / "summary.json").exists()


# -- export guards ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["config.toml", "state.json", "child.safetensors", "last.safetensors",
                                  "metrics.jsonl", "summary.json"])
def test_export_refuses_the_runs_own_files(finished, capsys, name):
    before = (finished / name).read_bytes()
    capsys.readouterr()
    assert main(["export", str(finished), "--out", str(finished / name)]) == 2
    assert "is one of the run's own files" in _one_line(capsys)
    assert (finished / name).read_bytes() == before


def test_export_to_a_directory_or_a_long_name(finished, tmp_path, capsys):
    capsys.readouterr()
    assert main(["export", str(finished), "--out", str(tmp_path)]) == 2
    assert "is a directory; give a file name" in _one_line(capsys)
    long = tmp_path / ("c" * 240 + ".safetensors")
    assert main(["export", str(finished), "--out", str(long)]) == 0 and long.is_file()
    assert not list(tmp_path.glob("*.tmp"))
    capsys.readouterr()
    assert main(["export", str(finished), "--out", str(tmp_path / ("d" * 300 + ".safetensors"))]) == 2
    assert "File name too long" in _one_line(capsys)
    assert main(["export", str(finished)]) == 0 and (finished / "export" / "child.safetensors").is_file()


# -- lock ----------------------------------------------------------------------------------------

def test_a_folder_in_use_is_refused_and_a_stale_lock_taken_over(manager, tmp_path, capsys):
    import socket

    folder = tmp_path / "r"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / ".hkt-lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                      "since": "now"}))
        with pytest.raises(ConfigError, match=f"run folder {folder} is in use by process {holder.pid}"):
            hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=1)
        assert not (folder / "config.toml").exists()
    finally:
        holder.kill()
        holder.wait()
    run = hkt_core.train("tiny-pair", "baseline", manager=manager, out=folder, epochs=1)
    assert f"locked by process {holder.pid}, which no longer runs" in capsys.readouterr().err
    assert run.summary and not (folder / ".hkt-lock").exists()


def test_two_trainings_into_one_folder(user_pair, isolated_home, tmp_path):
    """A second `hkt train --force` into the folder of a running one is refused and deletes nothing."""
    from test_train_support import hkt_command, subprocess_env

    install_user_card(isolated_home, delay=0.05)  # the first run takes its time
    out = tmp_path / "r"
    args = ["train", user_pair.name, "--method", "baseline", "--epochs", "2", "--out", str(out), "--no-progress"]
    first = subprocess.Popen(hkt_command(*args), env=subprocess_env(isolated_home), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        while not (out / "config.toml").exists() and first.poll() is None:
            time.sleep(0.02)
        run_id = read_toml(out / "config.toml")["run"]
        second = subprocess.run(hkt_command(*args, "--force"), env=subprocess_env(isolated_home),
                                capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second started; the test proved nothing"
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and f"is in use by process {first.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert read_toml(out / "config.toml")["run"] == run_id


# -- storage errors ------------------------------------------------------------------------------

def test_a_full_disk_is_one_line_and_the_committed_epoch_stays(user_pair, tmp_path, capsys, monkeypatch):
    from hkt_core.train import checkpoint

    out = tmp_path / "r"
    real = checkpoint.save_file
    calls = {"n": 0}

    def fill_up(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1 stages last + optimizer (+ child); epoch 2 runs out of space
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", fill_up)
    args = ["train", user_pair.name, "--method", "baseline", "--epochs", "3", "--out", str(out), "--no-progress"]
    calls["n"] = -1  # epoch 1 writes three files
    assert main(args) == 2
    err = _one_line(capsys)
    assert "No space left on device" in err and "cannot write" in err
    assert json.loads((out / "state.json").read_text())["epoch"] == 1
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.next"))
    monkeypatch.setattr(checkpoint, "save_file", real)
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 3


def test_out_an_existing_file_or_an_unwritable_place_is_one_line(user_pair, tmp_path, capsys):
    afile = tmp_path / "file.txt"
    afile.write_text("mine")
    base = ["train", user_pair.name, "--method", "baseline", "--epochs", "1", "--no-progress", "--out"]
    assert main([*base, str(afile)]) == 2
    assert "is an existing file" in _one_line(capsys)
    assert afile.read_text() == "mine"
    assert main([*base, str(afile / "run")]) == 2
    assert "cannot create the run folder" in _one_line(capsys)
    assert main([*base, "/proc/hkt-cannot-write-here"]) == 2
    assert "cannot create the run folder" in _one_line(capsys)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(manager, tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        run = hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", epochs=1)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.path.iterdir() if p.is_file()}
    assert modes and all(m == mode for m in modes.values()), modes
