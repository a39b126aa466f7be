"""A run folder cannot reach outside itself, and every fault ends in one line that loses nothing.

Probes as an attacker or an unlucky user would make them: links planted in a received run folder
(each file kind, the lock included), a disk that fills up or a file system that refuses a write
during a checkpoint or an export, a read that fails, a sample unlike the others, odd pair names,
temporaries a killed export left. Every check is on real files: the bytes of the files outside the
folder, the files inside it, and the one line the command prints (exit 2).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest
from safetensors import SafetensorError
from safetensors.torch import load_file

import hkt_core
from hkt_core.cli.main import main
from hkt_core.config import to_toml
from hkt_core.errors import ConfigError
from hkt_core.pairs import PairCard
from test_train_support import Interrupt, card_dict, manager_with, stop_after, tiny_card

VICTIM = b"the user's own file, outside the run folder\n"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _install(home, name: str = "tiny-pair", *, dataset: str | None = None, options: dict | None = None,
             **train) -> None:
    """Store a card in ``home/pairs`` (the tiny pair, or its data replaced by a fault_data set)."""
    data = card_dict(name, **train)
    if dataset is not None:
        data["dataset"], data["dataset_options"] = f"fault_data:{dataset}", options or {}
    folder = home / "pairs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(to_toml(data), encoding="utf-8")
    hkt_core.reset_default_manager()


def _train(name: str, out, *extra: str) -> int:
    return main(["train", name, "--method", "baseline", "--out", str(out), "--no-progress", *extra])


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".next")))


def _same_tensors(a, b) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(bool((x[k] == y[k]).all()) and x[k].dtype == y[k].dtype for k in x)


# -- the lock --------------------------------------------------------------------------------------

@pytest.mark.parametrize("plant", ["symlink", "dangling symlink", "hard link", "fifo"])
def test_a_planted_lock_is_refused_before_anything_is_written(isolated_home, tmp_path, capsys, plant):
    _install(isolated_home)
    run = tmp_path / "run"
    assert _train("tiny-pair", run, "--epochs", "1") == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    victim = tmp_path / "victim"
    lock = run / ".hkt-lock"
    if plant == "symlink":
        victim.write_bytes(VICTIM)
        lock.symlink_to(victim)
    elif plant == "dangling symlink":
        lock.symlink_to(victim)  # O_CREAT through it would create the user's file
    elif plant == "hard link":
        victim.write_bytes(VICTIM)
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    capsys.readouterr()
    # the probe as found: a resume that its settings would refuse anyway
    assert _train("tiny-pair", run, "--epochs", "1", "--resume", "--set", "train.batch_size=10") == 2
    err = _one_line(capsys)
    assert str(lock) in err and "remove" in err
    assert ("symbolic link" if "symlink" in plant else "hard link" if plant == "hard link" else "not a regular") in err
    if plant == "dangling symlink":
        assert not victim.exists()
    else:
        assert plant == "fifo" or victim.read_bytes() == VICTIM
    assert lock.is_symlink() or lock.exists()  # left as it was, for the user to look at
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p != lock} == before


# -- every other file kind: a link to a file outside is replaced, never written through -----------

@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run folder killed right after its first of two epochs was committed."""
    folder = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-pair", "baseline", manager=manager_with(tiny_card()), out=folder, epochs=2,
                       callbacks=[stop_after(1)])
    return folder


#: file kind -> what the planted link points to: a copy of the run's own file (so that reading
#: through the link gives what hkt expects), or a file of the user's that hkt never wrote
LINKED = {"state.json": "copy", "metrics.jsonl": "copy", "config.toml": "copy", "last.safetensors": "copy",
          "optimizer.safetensors": "copy", "child.safetensors": "copy", "summary.json": "own",
          "curves.png": "own", "history.jsonl": "own", "last.safetensors.next": "own",
          ".state.json.k1ll3d.tmp": "own"}


@pytest.mark.parametrize("name", sorted(LINKED))
def test_a_link_to_a_file_outside_is_never_written_through(interrupted, tmp_path, name):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    victim = tmp_path / "outside" / name
    victim.parent.mkdir()
    victim.write_bytes((run / name).read_bytes() if LINKED[name] == "copy" else VICTIM)
    expected = victim.read_bytes()
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(victim)
    # a changed learning rate: config.toml and history.jsonl are rewritten too
    done = hkt_core.train("tiny-pair", "baseline", manager=manager_with(tiny_card()), out=run, epochs=2, lr=0.01,
                          resume=True)
    assert done.summary["epochs"] == 2
    assert victim.read_bytes() == expected
    if name in ("child.safetensors",):  # rewritten only when epoch 2 is better: a link may stay, unwritten
        return
    assert not (run / name).is_symlink()
    if name.endswith((".tmp", ".next")):
        assert not (run / name).exists()


def test_export_replaces_a_linked_target_and_never_writes_through_it(interrupted, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(VICTIM)
    (run / "export").mkdir()
    (run / "export" / "child.safetensors").symlink_to(victim)
    mine = tmp_path / "mine.safetensors"
    mine.symlink_to(victim)
    hkt_core.reset_default_manager()
    assert main(["export", str(run), "--trust-code"]) == 0
    assert main(["export", str(run), "--out", str(mine), "--trust-code"]) == 0
    assert victim.read_bytes() == VICTIM
    assert not (run / "export" / "child.safetensors").is_symlink() and not mine.is_symlink()


def test_a_linked_tensorboard_folder_is_refused(isolated_home, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    _install(isolated_home)
    run, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    run.mkdir()
    (run / "tensorboard").symlink_to(outside)
    assert _train("tiny-pair", run, "--epochs", "1", "--log", "tensorboard") == 2
    err = _one_line(capsys)
    assert f"{run / 'tensorboard'} is a symbolic link" in err
    assert list(outside.iterdir()) == []


def test_a_path_must_stay_inside_its_folder(tmp_path):
    from hkt_core.errors import UnsafePathError
    from hkt_core.io import check_inside

    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "plots").mkdir(parents=True)
    outside.mkdir()
    check_inside(run, run / "plots" / "a.png")
    check_inside(run, run / "not-yet" / "a.png")
    (run / "linked").symlink_to(outside)
    (run / "plots" / "deeper").symlink_to(outside)
    for path, problem in ((tmp_path / "other" / "x", "is not inside"), (run / ".." / "outside" / "x", "through '..'"),
                          (run / "linked" / "x", "is a symbolic link"),
                          (run / "plots" / "deeper" / "x", "is a symbolic link")):
        with pytest.raises(UnsafePathError, match=problem):
            check_inside(run, path)


# -- a disk that fills up, a file system that refuses -----------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB tmpfs (needs root; skipped elsewhere, where the monkeypatched tests below stand in)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_real_full_disk_during_a_checkpoint_and_an_export(small_disk, isolated_home, tmp_path, capsys):
    from fault_data import fill_up
    from hkt_core.train import checkpoint

    run, filler = small_disk / "run", small_disk / "filler"
    _install(isolated_home, "full-disk", dataset="fails_after_commit",
             options={"watch": str(run / "state.json"), "fault": "fill", "filler": str(filler),
                      "once": str(tmp_path / "filled")})
    assert _train("full-disk", tmp_path / "reference", "--epochs", "3") == 0
    capsys.readouterr()
    assert _train("full-disk", run, "--epochs", "3") == 2  # the disk fills up during epoch 2
    err = _one_line(capsys)
    assert "No space left on device (free some space first)" in err and "cannot write" in err
    assert f"{run} keeps epoch 1 of 3" in err and f"--out {run} --resume" in err
    assert checkpoint.read_state(run / "state.json")["epoch"] == 1
    assert _leftovers(run) == []
    filler.unlink()
    assert _train("full-disk", run, "--epochs", "3", "--resume") == 0
    for name in ("last.safetensors", "child.safetensors"):  # as if the disk had never filled up
        assert _same_tensors(run / name, tmp_path / "reference" / name)
    fill_up(filler)
    capsys.readouterr()
    assert main(["export", str(run)]) == 2
    err = _one_line(capsys)
    assert "No space left on device" in err and "no child.safetensors was written" in err
    assert f"hkt export {run}" in err
    assert list((run / "export").iterdir()) == []
    filler.unlink()
    assert main(["export", str(run)]) == 0 and (run / "export" / "child.safetensors").is_file()


def _failing_save(code: int, stage: str, run):
    """safetensors' writer failing as it does (a SafetensorError around the OS error) for ``stage`` once
    ``run`` holds a committed epoch."""
    from hkt_core.train import checkpoint

    real = checkpoint.save_file

    def save_file(tensors, path, metadata=None):
        if os.path.basename(path).startswith(f".{stage}.") and (run / "state.json").exists():
            raise SafetensorError(f"Error while serializing: I/O error: {os.strerror(code)} (os error {code})")
        return real(tensors, path, metadata=metadata)
    return save_file


def _failing_write(code: int, stage: str, run):
    """``os.write`` failing with ``code`` on the temporary of ``stage`` once ``run`` holds a committed epoch."""
    real = os.write

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if os.path.basename(target).startswith(f".{stage}.") and (run / "state.json").exists():
            raise OSError(code, os.strerror(code))
        return real(fd, data)
    return write


@pytest.mark.parametrize("code, stage, kept", [(errno.ENOSPC, "last.safetensors.next", 1),
                                               (errno.EIO, "optimizer.safetensors.next", 1),
                                               (errno.EROFS, "state.json", 1), (errno.EACCES, "metrics.jsonl", 1),
                                               (errno.EDQUOT, "summary.json", 3)])
def test_a_refused_write_during_training_is_one_line_and_loses_nothing(isolated_home, tmp_path, capsys, monkeypatch,
                                                                      code, stage, kept):
    from hkt_core.train import checkpoint

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to tell a file's descriptor")
    _install(isolated_home)
    run = tmp_path / "run"
    real_save, real_write = checkpoint.save_file, os.write
    if stage.endswith(".next"):
        monkeypatch.setattr(checkpoint, "save_file", _failing_save(code, stage, run))
    else:
        monkeypatch.setattr(os, "write", _failing_write(code, stage, run))
    assert _train("tiny-pair", run, "--epochs", "3") == 2
    err = _one_line(capsys)
    assert f"cannot write {run / stage}: {os.strerror(code)}" in err
    assert f"{run} keeps epoch {kept} of 3" in err and f"hkt train tiny-pair --method baseline --out {run} --resume" in err
    assert checkpoint.read_state(run / "state.json")["epoch"] == kept and not (run / "summary.json").exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    if stage != "metrics.jsonl":  # staged before the metrics: those are discarded by the resume
        assert _leftovers(run) == []
    monkeypatch.setattr(checkpoint, "save_file", real_save)  # room again
    monkeypatch.setattr(os, "write", real_write)
    assert _train("tiny-pair", run, "--epochs", "3", "--resume") == 0
    assert checkpoint.read_state(run / "state.json")["epoch"] == 3 and _leftovers(run) == []


def test_a_failing_read_during_training_is_one_line(isolated_home, tmp_path, capsys):
    run = tmp_path / "run"
    _install(isolated_home, "failing-read", dataset="fails_after_commit",
             options={"watch": str(run / "state.json"), "fault": "eio", "once": str(tmp_path / "failed")})
    assert _train("failing-read", run, "--epochs", "2") == 2
    err = _one_line(capsys)
    assert "Input/output error (check the disk first)" in err and "sample-" in err
    assert f"{run} keeps epoch 1 of 2" in err and "--resume" in err
    assert _train("failing-read", run, "--epochs", "2", "--resume") == 0


def test_a_full_disk_during_an_export_keeps_the_previous_one(interrupted, tmp_path, capsys, monkeypatch):
    from hkt_core.train import checkpoint

    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    hkt_core.reset_default_manager()
    assert main(["export", str(run), "--trust-code"]) == 0
    previous = (run / "export" / "child.safetensors").read_bytes()
    real = checkpoint.save_file

    def full(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)  # a part of the file, then no more room
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    capsys.readouterr()
    assert main(["export", str(run), "--trust-code"]) == 2
    err = _one_line(capsys)
    assert "No space left on device" in err and "the previous child.safetensors is kept" in err
    assert (run / "export" / "child.safetensors").read_bytes() == previous
    assert [p.name for p in (run / "export").iterdir()] == ["child.safetensors"]


def test_an_export_folder_that_cannot_be_created_is_one_line(interrupted, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    (tmp_path / "a-file").write_text("mine")
    hkt_core.reset_default_manager()
    target = tmp_path / "a-file" / "child.safetensors"
    assert main(["export", str(run), "--out", str(target)]) == 2
    err = _one_line(capsys)
    assert f"cannot create the folder {tmp_path / 'a-file'}: File exists" in err
    assert "no child.safetensors was written" in err and f"hkt export {run} --out {target}" in err
    assert (tmp_path / "a-file").read_text() == "mine"


# -- a sample unlike the others ---------------------------------------------------------------------

@pytest.mark.parametrize("kind, workers, found", [
    ("shape", 0, "in its inputs: a float32 tensor of shape (1, 8, 9), where the others have a float32 tensor of "
                 "shape (1, 8, 8)"),
    ("shape", 2, "in its inputs: a float32 tensor of shape (1, 8, 9)"),
    ("dtype", 0, "in its inputs: a float64 tensor of shape (1, 8, 8), where the others have a float32"),
    ("structure", 0, "in the sample itself: a sequence of 3, where the others have an (inputs, target) pair"),
])
def test_a_sample_unlike_the_others_is_named(isolated_home, tmp_path, capsys, kind, workers, found):
    _install(isolated_home, "odd-sample", dataset="one_odd_sample", options={"odd": 150, "kind": kind})
    assert _train("odd-sample", tmp_path / "run", "--epochs", "1", "--set", f"train.num_workers={workers}") == 2
    err = _one_line(capsys)
    assert "data set 'fault_data:one_odd_sample': sample 150 of its training data (" in err
    assert "training split)" in err or "validation split)" in err
    assert found in err and "repair or drop that sample" in err


def test_a_batch_of_one_and_an_odd_first_sample_are_named():
    import torch

    from hkt_core.errors import SampleError
    from hkt_core.train.data import SplitData, _Collate, first_samples

    def rows(*widths):
        samples = [(torch.zeros(w), 0) for w in widths]
        return samples, SplitData(samples, range(len(samples)), dataset_name="rows", split="test")

    samples, split = rows(4, 4, 4, 4, 4, 3)
    with pytest.raises(SampleError, match=r"sample 5 of its test data \(test split\) differs from the others in "
                                          r"its inputs: a float32 tensor of shape \(3,\), where the others have a "
                                          r"float32 tensor of shape \(4,\)"):
        _Collate(split)([(5, samples[5])])  # a last batch of one: judged against the split's first sample
    samples, split = rows(3, 4, 4, 4, 4, 4)
    with pytest.raises(SampleError, match=r"sample 0 of its test data .* shape \(3,\), where the others have .* "
                                          r"shape \(4,\)"):
        _Collate(split)([(i, samples[i]) for i in range(1, 6)])  # the batch agrees: the first sample is odd
    inputs, target = _Collate(split)([(0, samples[0])])
    assert inputs.shape == (1, 3) and target.tolist() == [0]
    samples, split = rows(4, 3, 4)
    with pytest.raises(SampleError, match=r"sample 1 of its test data \(test split\) differs"):
        first_samples(split, 2)
    assert first_samples(split, 1)[0].shape == (1, 4)
    mixed = [(torch.zeros(2), 1), (torch.zeros(2), 2.5), (torch.zeros(2), 3)]  # numbers batch together
    inputs, target = _Collate(SplitData(mixed, range(3), dataset_name="rows", split="val"))(list(enumerate(mixed)))
    assert target.tolist() == [1.0, 2.5, 3.0]


# -- pair names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shown", [("abc\n", "'abc\\n'"), ("p" * 300, "300 characters"),
                                         ("a" * 65, "'" + "a" * 65 + "'")])
def test_a_pair_name_is_checked_whole_and_bounded(isolated_home, tmp_path, capsys, name, shown):
    card = tmp_path / "card.toml"
    data = card_dict("placeholder")
    data["name"] = name
    card.write_text(to_toml(data), encoding="utf-8")
    assert main(["pairs", "add", str(card)]) == 2
    err = _one_line(capsys)
    assert shown in err and "at most 64 characters" in err
    assert not (isolated_home / "pairs").exists() or list((isolated_home / "pairs").iterdir()) == []


def test_a_name_of_64_characters_is_a_name():
    assert PairCard.from_dict(card_dict("a" * 64)).name == "a" * 64
    with pytest.raises(ConfigError, match="at most 64 characters"):
        PairCard.from_dict(card_dict("a" * 65))


# -- temporaries a killed export left --------------------------------------------------------------

def test_export_removes_its_temporaries_at_any_nesting(interrupted, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    export = run / "export"
    export.mkdir()
    orphans = [".child.safetensors.1a2b3c4d.tmp", "..child.safetensors.1a2b3c4d.tmp.k1ll3d.tmp",
               "...child.safetensors.1a2b3c4d.tmp.k1ll3d.tmp.x9y8z7.tmp"]
    others = [".child.safetensorsx.1a2b.tmp", ".other.onnx.5e6f.tmp", "child.safetensors.tmp"]
    for name in orphans + others:
        (export / name).write_bytes(b"half a file")
    hkt_core.reset_default_manager()
    assert main(["export", str(run), "--trust-code"]) == 0
    assert sorted(p.name for p in export.iterdir()) == sorted(["child.safetensors", *others])


def test_temporaries_of_long_names_are_recognised_at_every_level():
    from hkt_core.io import is_temporary_of

    name = "c" * 60 + ".safetensors"
    level1 = "." + name[:40] + ".ab12cd34.tmp"
    level2 = "." + level1[:40] + ".ef56gh78.tmp"
    level3 = "." + level2[:40] + ".ij90kl12.tmp"
    assert all(is_temporary_of(n, name) for n in (level1, level2, level3))
    assert not is_temporary_of("." + "d" * 40 + ".ab12.tmp", name)
    assert not is_temporary_of(".child.safetensors2.ab12.tmp", "child.safetensors")
