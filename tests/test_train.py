"""The trainer in-process on the tiny test pair: run folder, selection, exact resume, failure paths."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import hkt_core
from hkt_core.errors import CheckpointError, ConfigError, RegistryError
from hkt_core.train import Run, StepOutput, load_run
from hkt_core.train.methods import BaselineMethod
from hkt_core.train.trainer import TrainingDiverged
from test_train_support import Interrupt, make_child, manager_with, tiny_card
from test_train_support import stop_after as _stop_after



class NaNAtSecondEpoch(BaselineMethod):
    """Baseline whose loss turns NaN in epoch 2 (a plugin method, registered like any other).

    Steps are counted per instance: the pre-flight's one step runs on an instance of its own."""

    calls = 0

    def training_step(self, inputs, target):
        out = super().training_step(inputs, target)
        self.calls += 1
        return StepOutput(out.loss * float("nan"), out.logs) if self.calls > 8 else out


@pytest.fixture
def manager():
    return manager_with(tiny_card(), tiny_card("tiny-bn", batchnorm=True, augment=True, optimizer="adamw", lr=0.01),
                        methods={"nan-test": NaNAtSecondEpoch})


def test_baseline_run_folder(manager, tmp_path):
    run = hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", epochs=3, seed=3)
    assert isinstance(run, Run)
    names = {p.name for p in run.path.iterdir()}
    assert {"config.toml", "metrics.jsonl", "child.safetensors", "last.safetensors", "state.json",
            "optimizer.safetensors", "summary.json", "curves.png"} <= names
    child_keys = set(make_child().state_dict())
    assert set(load_file(run.path / "child.safetensors")) == child_keys
    assert set(load_file(run.path / "last.safetensors")) == child_keys
    # metrics: one record per epoch; the kept checkpoint is the best (earliest on ties) on validation
    records = run.metrics
    assert [r["epoch"] for r in records] == [1, 2, 3]
    accs = [r["val_accuracy"] for r in records]
    best_epoch = accs.index(max(accs)) + 1
    s = run.summary
    assert s["best_epoch"] == best_epoch and s["primary_metric"] == "accuracy"
    assert s["val"]["accuracy"] == pytest.approx(max(accs))
    assert 0.0 <= s["test"]["accuracy"] <= 1.0 and s["parameters"] == sum(p.numel() for p in make_child().parameters())
    assert s["latency_ms_per_sample"] > 0
    # the run's child is the best checkpoint, in eval mode, and gives the recorded test accuracy
    child = load_run(run.path, manager).child()
    best = load_file(run.path / "child.safetensors")
    assert all(torch.equal(child.state_dict()[k], best[k]) for k in best)
    assert not child.training
    config = hkt_core.config.read_toml(run.path / "config.toml")
    assert config["train"]["epochs"] == 3 and config["train"]["seed"] == 3 and config["pair"] == "tiny-pair"
    assert config["card"]["child"] == "test_train_support:make_child"


def _last(path):
    return load_file(path / "last.safetensors")


def test_resume_is_exact_with_adamw_and_batchnorm(manager, tmp_path):
    """An uninterrupted run and one stopped after epoch 1 then resumed end bit-identical (with
    random augmentation, BatchNorm buffers and Adam moments in play)."""
    common = dict(manager=manager, epochs=3, seed=7)
    a = hkt_core.train("tiny-bn", "baseline", out=tmp_path / "A", **common)
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-bn", "baseline", out=tmp_path / "B", callbacks=[_stop_after(1)], **common)
    assert json.loads((tmp_path / "B" / "state.json").read_text())["epoch"] == 1
    b = hkt_core.train("tiny-bn", "baseline", out=tmp_path / "B", resume=True, **common)
    ta, tb = _last(a.path), _last(b.path)
    assert any("running_mean" in k for k in ta)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert load_file(a.path / "optimizer.safetensors").keys() == load_file(b.path / "optimizer.safetensors").keys()
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("seconds", "step_seconds")} for r in rs]  # noqa: E731
    assert strip(a.metrics) == strip(b.metrics)
    assert a.summary["test"] == b.summary["test"]


def test_interrupted_commit_is_rolled_back_or_forward(manager, tmp_path):
    from hkt_core.train import checkpoint as ckpt

    with pytest.raises(Interrupt):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", epochs=3,
                       callbacks=[_stop_after(1)])
    folder = tmp_path / "r"
    state = json.loads((folder / "state.json").read_text())
    good = _last(folder)
    # a crash between staging epoch 2's files and committing state.json: the staged files are dropped
    bogus = {k: torch.zeros_like(v) for k, v in good.items()}
    ckpt.stage(folder / "last.safetensors", bogus, kind="child", metadata={"run": state["run"], "epoch": 2})
    assert ckpt.recover(folder)["epoch"] == 1
    assert not list(folder.glob("*.next"))
    assert all(torch.equal(good[k], v) for k, v in _last(folder).items())
    # a crash after the commit but before the renames: the staged files are moved into place
    ckpt.stage(folder / "last.safetensors", bogus, kind="child", metadata={"run": state["run"], "epoch": 1})
    ckpt.recover(folder)
    assert all(torch.equal(v, torch.zeros_like(v)) for v in _last(folder).values())


def test_existing_folder_needs_resume_or_force(manager, tmp_path):
    hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", epochs=1)
    with pytest.raises(ConfigError, match="already exists; pass --resume to continue it or --force"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", epochs=1)
    with pytest.raises(ConfigError, match="exclude each other"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", resume=True, force=True)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "new", resume=True)
    with pytest.raises(ConfigError, match=r"train.batch_size: run has 20, now 7"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", epochs=1, batch_size=7,
                       resume=True)
    run = hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "r", epochs=1, seed=5, force=True)
    assert run.summary["seed"] == 5


def test_nan_stops_and_keeps_last_good_checkpoint(manager, tmp_path):
    folder = tmp_path / "r"
    with pytest.raises(TrainingDiverged, match=r"training loss is nan at epoch 2, step 1.*epoch 1\) is kept"):
        hkt_core.train("tiny-pair", "nan-test", manager=manager, out=folder, epochs=3)
    assert json.loads((folder / "state.json").read_text())["epoch"] == 1
    assert all(math.isfinite(float(v.abs().sum())) for v in _last(folder).values())
    assert not (folder / "summary.json").exists()


def test_corrupt_and_foreign_checkpoints_are_refused(manager, tmp_path):
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "a", epochs=2,
                       callbacks=[_stop_after(1)])
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "b", epochs=2,
                       callbacks=[_stop_after(1)])
    foreign = (tmp_path / "b" / "last.safetensors").read_bytes()
    (tmp_path / "a" / "last.safetensors").write_bytes(foreign)
    with pytest.raises(CheckpointError, match="belongs to another run"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "a", epochs=2, resume=True)
    (tmp_path / "b" / "last.safetensors").write_bytes(foreign[: len(foreign) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "b", epochs=2, resume=True)
    (tmp_path / "b" / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "b", epochs=2, resume=True)


def test_kd_trains_then_reuses_the_cached_parent(manager, tmp_path, capsys, isolated_home):
    r1 = hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "kd1", epochs=1)
    err = capsys.readouterr().err
    assert "no trained parent cached for pair 'tiny-pair'" in err and "training the parent first" in err
    source = r1.config["parent"]
    assert source["source"] == "cache" and source["path"].startswith(str(isolated_home / "parents"))
    r2 = hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "kd2", epochs=1)
    assert "using the cached parent" in capsys.readouterr().err
    assert r2.config["parent"]["sha256"] == source["sha256"]
    # a parent trained explicitly with the pair's parent settings lands in the same cache entry
    parent_run = load_run(source["path"], manager)
    assert parent_run.config["trains_parent"] is True
    assert sum(p.numel() for p in parent_run.child().parameters()) > sum(p.numel() for p in make_child().parameters())


def test_parent_weights_file_is_checked(manager, tmp_path):
    from test_train_support import make_parent

    wrong = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in make_child().state_dict().items()}, wrong)
    with pytest.raises(CheckpointError, match=r"does not fit parent 'test_train_support:make_parent'.*shape mismatch"):
        hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "w", epochs=1, parent_weights=wrong)
    right = tmp_path / "parent.safetensors"
    save_file({k: v.contiguous() for k, v in make_parent().state_dict().items()}, right)
    run = hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "k", epochs=1, parent_weights=right)
    assert run.config["parent"]["source"] == "file" and run.config["parent"]["path"] == str(right.resolve())


def test_bad_names_and_options_list_the_choices(manager, tmp_path):
    with pytest.raises(RegistryError, match="unknown pairs 'tiny-pear'; closest: tiny-pair"):
        hkt_core.train("tiny-pear", "baseline", manager=manager, out=tmp_path / "x")
    with pytest.raises(RegistryError, match="unknown methods 'kdd'; closest: kd"):
        hkt_core.train("tiny-pair", "kdd", manager=manager, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="unknown training option.*epoch.*allowed: epochs"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "x", epoch=3)
    with pytest.raises(ConfigError, match="TrainConfig.optimizer = 'adam' is invalid: must be one of sgd, adamw"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "x", settings=["train.optimizer=adam"])
    with pytest.raises(ConfigError, match="unknown setting 'lrr'"):
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "x", settings=["train.lrr=1"])


def test_wrong_input_shapes_name_the_expectation(tmp_path):
    card = tiny_card("tiny-shapes")
    card = type(card).from_dict({**card.to_dict(), "input_shapes": [[1, 3, 8, 8]]})
    with pytest.raises(ConfigError, match=r"yields inputs of shape \(1, 8, 8\).*expects \(3, 8, 8\)"):
        hkt_core.train(card, "baseline", manager=manager_with(card), out=tmp_path / "x", epochs=1)


def test_resume_is_exact_for_hkt_with_its_operators(manager, tmp_path):
    common = dict(manager=manager, epochs=3, seed=7)
    a = hkt_core.train("tiny-bn", "hkt", out=tmp_path / "A", **common)
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-bn", "hkt", out=tmp_path / "B", callbacks=[_stop_after(1)], **common)
    b = hkt_core.train("tiny-bn", "hkt", out=tmp_path / "B", resume=True, **common)
    ta, tb = _last(a.path), _last(b.path)
    assert set(ta) == set(make_child(batchnorm=True).state_dict())
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    ma, mb = load_file(a.path / "method.safetensors"), load_file(b.path / "method.safetensors")
    assert ma and ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    assert not any(k.startswith(("child.", "parent.")) for k in ma), "only the ETM operators' own state"
    assert "train_l1" in a.metrics[0] and "train_l3" in a.metrics[0]


def test_parent_method_fills_the_cache_that_kd_uses(manager, tmp_path, capsys):
    card = manager.lookup("pairs", "tiny-pair")
    parent_run = hkt_core.train("tiny-pair", "parent", manager=manager, out=tmp_path / "p")
    assert parent_run.config["trains_parent"] and parent_run.config["train"]["epochs"] == card.parent_train["epochs"]
    from test_train_support import make_parent

    assert set(load_file(parent_run.path / "child.safetensors")) == set(make_parent().state_dict())
    assert "parent cached in" in capsys.readouterr().err
    kd = hkt_core.train("tiny-pair", "kd", manager=manager, out=tmp_path / "kd", epochs=1)
    assert "using the cached parent" in capsys.readouterr().err
    from hkt_core.train.parents import sha256_file

    assert kd.config["parent"]["sha256"] == sha256_file(parent_run.path / "child.safetensors")
