"""A received run folder or card is data: crafted references, files and data are refused in one line.

Each test crafts what an attacker or an unlucky user would hand over, and checks that nothing is
written, deleted or run, and that the refusal is one line (exit 2 on the command line).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest
import torch

import hkt_core
from hkt_core.cli.main import main
from hkt_core.config import read_toml, to_toml
from hkt_core.errors import CheckpointError, ConfigError, DataError, TrainingInterrupted
from hkt_core.models import build_model
from hkt_core.pairs import PairCard
from hkt_core.plugins import default_manager
from hkt_core.trust import UntrustedReference, resolve_reference
from test_train_support import card_dict, install_user_card, manager_with, tiny_card


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def run_dir(tmp_path):
    manager = manager_with(tiny_card())
    return hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "run", epochs=1).path


def _edit_config(run_dir, edit) -> None:
    config = read_toml(run_dir / "config.toml")
    edit(config)
    (run_dir / "config.toml").write_text(to_toml(config), encoding="utf-8")


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- gadgets: functions of hkt itself named by a folder or a card --------------------------------

def _gadgets(tmp_path):
    target = tmp_path / "written-by-a-gadget"
    user_card = tmp_path / "home-card"
    return target, {
        "write a file": ("hkt_core.io:atomic_write_text", {"path": str(target), "text": "import os\n"}),
        "run hkt itself": ("hkt_core.cli.main:main", {"argv": ["pairs", "new", str(target), "--parent", "a",
                                                               "--child", "b", "--dataset", "c"]}),
        "delete a card": ("hkt_core.pairs:remove_user_card", {"name": user_card.name}),
        "build a model by name": ("hkt_core.models:build_model", {"ref": "os:system", "manager": None}),
    }


@pytest.mark.parametrize("gadget", ["write a file", "run hkt itself", "delete a card", "build a model by name"])
def test_run_folder_naming_a_function_of_hkt_runs_nothing(run_dir, tmp_path, capsys, gadget):
    target, gadgets = _gadgets(tmp_path)
    ref, options = gadgets[gadget]
    _edit_config(run_dir, lambda c: c["card"].update(child=ref, child_options=options))
    before = _snapshot(run_dir)
    for argv in (["eval", str(run_dir)], ["export", str(run_dir)], ["eval", str(run_dir), "--trust-code"]):
        assert main(argv) == 2
        err = _one_line(capsys)
        assert ref in err and "refused" in err and "not a registered model" in err
    assert not target.exists()
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("command", ["check", "add"])
def test_card_naming_a_function_of_hkt_runs_nothing_before_it_is_stored(tmp_path, capsys, isolated_home, command):
    target, gadgets = _gadgets(tmp_path)
    ref, options = gadgets["write a file"]
    data = card_dict("gadget-card")
    data["child"], data["child_options"] = ref, options
    card = tmp_path / "gadget-card.toml"
    card.write_text(to_toml(data), encoding="utf-8")
    assert main(["pairs", command, str(card)]) == 2
    err = _one_line(capsys)
    assert ref in err and "refused" in err
    assert not target.exists() and not (isolated_home / "pairs" / "gadget-card.toml").exists()


@pytest.mark.parametrize("ref", [
    "received_gadgets:make.__globals__.update",
    "hkt_core.io:atomic_write.__builtins__.update",
    "hkt_core.trust:Origin.__base__.__subclasses__",
    "received_gadgets:_private_helper",
])
def test_private_and_special_attribute_chains_are_refused_before_any_import(ref, tmp_path, monkeypatch):
    (tmp_path / "received_gadgets.py").write_text("raise SystemExit('imported')\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UntrustedReference, match="private or special attribute"):
        resolve_reference(ref, kind="models", manager=default_manager())
    assert "received_gadgets" not in sys.modules


def test_a_user_module_re_exporting_hkt_functions_reaches_only_registered_ones(tmp_path, monkeypatch):
    (tmp_path / "reexports.py").write_text(textwrap.dedent("""
        from hkt_core.io import atomic_write_text
        from hkt_vision.models.convnet import digits_cnn_small
        from hkt_core.trust import Origin

        class NotAModel:
            pass

        value = 3
    """), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    manager = default_manager()
    with pytest.raises(UntrustedReference, match="not a registered model"):
        resolve_reference("reexports:atomic_write_text", kind="models", manager=manager)
    with pytest.raises(UntrustedReference, match="not a registered model"):
        resolve_reference("reexports:Origin", kind="models", manager=manager)
    with pytest.raises(UntrustedReference, match="not an nn.Module"):
        resolve_reference("reexports:NotAModel", kind="models", manager=manager)
    with pytest.raises(UntrustedReference, match="not a callable class or function"):
        resolve_reference("reexports:value", kind="models", manager=manager)
    model = build_model("reexports:digits_cnn_small", manager)
    assert model.hkt_model_name == "digits_cnn_small"  # the registered model, so its adapter applies
    sys.modules.pop("reexports", None)


def test_a_registered_factory_named_by_its_path_keeps_working_with_a_deprecation_line(run_dir, capsys, monkeypatch):
    monkeypatch.setattr(hkt_core.trust, "_deprecations_said", set())  # said once per process
    _edit_config(run_dir, lambda c: c["card"].update(child="test_train_support:make_child"))
    manager = default_manager()
    model = build_model("hkt_vision.models.convnet:digits_cnn_small", manager)
    assert model.hkt_model_name == "digits_cnn_small"
    err = capsys.readouterr().err
    assert "deprecated" in err and "'digits_cnn_small'" in err and len(err.strip().splitlines()) == 1


def test_trust_code_cannot_be_granted_by_a_folder(run_dir, tmp_path, capsys):
    """A folder naming `hkt eval --trust-code` on an inner folder: refused, the inner payload never runs."""
    inner = tmp_path / "inner"
    marker = tmp_path / "payload-ran"
    inner.mkdir()
    (inner / "payload.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                      f"def make():\n    pass\n", encoding="utf-8")
    _edit_config(run_dir, lambda c: c["card"].update(
        child="hkt_core.cli.main:main", child_options={"argv": ["eval", str(inner), "--trust-code"]},
        source_folder=str(inner)))
    assert main(["eval", str(run_dir)]) == 2
    assert "refused" in _one_line(capsys)
    assert not marker.exists()


# -- sys.path: nothing in the current folder shadows the standard library or installed packages -----

def test_resolving_a_reference_leaves_sys_path_as_it_was_and_shadows_nothing(tmp_path, monkeypatch):
    marker = tmp_path / "shadow-ran"
    (tmp_path / "mine_here.py").write_text("import torch\ndef make():\n    return torch.nn.Linear(2, 2)\n",
                                           encoding="utf-8")
    # a file of the current folder named like a standard-library module hkt or a user may import later
    (tmp_path / "colorsys.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n",
                                          encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    before = list(sys.path)
    assert isinstance(build_model("mine_here:make", default_manager()), torch.nn.Linear)
    assert sys.path == before and "" not in sys.path[:1]
    import colorsys

    assert not marker.exists() and colorsys.__file__ != str(tmp_path / "colorsys.py")
    sys.modules.pop("mine_here", None)


def test_a_run_folder_file_named_like_an_optional_package_is_never_imported(run_dir, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "fake-package-ran"
    (run_dir / "onnxruntime.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                            f"raise ImportError('fake')\n", encoding="utf-8")
    monkeypatch.chdir(run_dir)
    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    main(["eval", "."])
    capsys.readouterr()
    pytest.importorskip("onnxruntime")
    assert not marker.exists()


# -- crafted run-folder files: one line, exit 2, nothing written ------------------------------------

def _deep_json(levels: int) -> str:
    return '{"format": "hkt-checkpoint", "x": ' + "[" * levels + "]" * levels + "}"


@pytest.mark.parametrize("file, text", [
    ("state.json", _deep_json(100_000)),
    ("state.json", _deep_json(40)),
    ("state.json", "[1, 2]"),
    ("config.toml", "pair = 'x'\nmethod = 'baseline'\nx = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("config.toml", "pair = 'x'\nmethod = 'baseline'\n"),
    ("config.toml", "pair = 'x'\nmethod = 'baseline'\ncard = 5\n"),
])
def test_crafted_run_folder_files_are_one_line(run_dir, capsys, file, text):
    (run_dir / file).write_text(text, encoding="utf-8")
    before = _snapshot(run_dir)
    for argv in (["eval", str(run_dir)], ["export", str(run_dir)]):
        assert main(argv) == 2
        assert file in _one_line(capsys)
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("file, text", [
    ("alignment.json", "[" * 100_000 + "]" * 100_000),
    ("alignment.json", '{"version": 1, "input_shapes": [[1, 1, 8, 8]], "pairs": [{"parent": 5, "child": "x", '
                       '"parent_shape": "y", "child_shape": [1], "score": "s"}]}'),
    ("summary.json", "[" * 100_000 + "]" * 100_000),
    ("summary.json", "[1, 2]"),
])
def test_crafted_alignment_and_summary_are_one_line(run_dir, file, text):
    (run_dir / file).write_text(text, encoding="utf-8")
    run = hkt_core.load_run(run_dir)
    with pytest.raises(CheckpointError, match=file) as info:
        getattr(run, "alignment" if file == "alignment.json" else "summary")
    assert len(str(info.value).splitlines()) == 1


@pytest.fixture
def stored_run(isolated_home, tmp_path):
    card = install_user_card(isolated_home)
    hkt_core.reset_default_manager()
    out = tmp_path / "r"
    assert main(["train", card.name, "--method", "baseline", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    return card, out


@pytest.mark.parametrize("field, value", [
    ("epoch", "abc"), ("step", "x"), ("rng", None), ("rng.python", [3, [1, 2], None]),
    ("rng.numpy", "x"), ("rng.torch", "not base64!"), ("best", "x"), ("optimizer.param_groups", "x"),
    ("optimizer", None), ("files", 5), ("files", {"child.safetensors": "zz"}), ("epoch", -1),
    ("world_size", 0),
])
def test_resume_with_an_edited_state_is_one_line_and_writes_nothing(stored_run, capsys, field, value):
    card, out = stored_run
    state = json.loads((out / "state.json").read_text())
    *path, last = field.split(".")
    holder = state
    for key in path:
        holder = holder[key]
    if value is None:
        holder.pop(last)
    else:
        holder[last] = value
    (out / "state.json").write_text(json.dumps(state), encoding="utf-8")
    capsys.readouterr()
    before = _snapshot(out)
    assert main(["train", card.name, "--method", "baseline", "--epochs", "2", "--out", str(out), "--resume",
                 "--no-progress"]) == 2
    err = _one_line(capsys)
    assert "state.json" in err and field.split(".")[0] in err
    assert _snapshot(out) == before


def test_a_malformed_files_field_cannot_switch_verification_off(run_dir, capsys):
    state = json.loads((run_dir / "state.json").read_text())
    state["files"] = "all good"
    (run_dir / "state.json").write_text(json.dumps(state), encoding="utf-8")
    assert main(["eval", str(run_dir)]) == 2
    err = _one_line(capsys)
    assert "'files'" in err and "SHA-256" in err and "written before hkt recorded checksums" not in err


def test_integer_or_bool_tensors_never_load_into_float_weights(tmp_path):
    from hkt_core.train.checkpoint import load_module_state, write_tensors

    model = torch.nn.Linear(2, 2)
    for dtype in (torch.bool, torch.int64):
        write_tensors(tmp_path / "w.safetensors", {k: torch.ones_like(v, dtype=dtype)
                                                   for k, v in model.state_dict().items()}, kind="export")
        with pytest.raises(CheckpointError, match="dtype mismatch"):
            load_module_state(model, tmp_path / "w.safetensors")
    write_tensors(tmp_path / "half.safetensors", {k: v.half() for k, v in model.state_dict().items()}, kind="export")
    load_module_state(model, tmp_path / "half.safetensors")  # another float precision still loads


# -- the lock ------------------------------------------------------------------------------------

def test_stale_lock_takeover_cannot_be_won_twice(tmp_path, monkeypatch):
    """A and B both find the same dead owner; while A takes over, B must be refused (it used to
    delete A's fresh lock and both trained into one folder)."""
    import socket

    from hkt_core.train import lock as lock_module

    folder = tmp_path / "r"
    folder.mkdir()
    (folder / ".hkt-lock").write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname(),
                                                  "since": "then"}))
    seen = []

    def alive_while_b_tries(pid):
        if not seen:
            seen.append(pid)
            with pytest.raises(ConfigError, match="is in use by process"):
                lock_module.RunLock.acquire(folder)  # B, at the worst moment
        return False

    monkeypatch.setattr(lock_module, "_alive", alive_while_b_tries)
    a = lock_module.RunLock.acquire(folder)
    assert seen and json.loads((folder / ".hkt-lock").read_text())["pid"] == os.getpid()
    with pytest.raises(ConfigError, match="is in use by process"):
        lock_module.RunLock.acquire(folder)  # the lock is held, whatever its file says
    a.release()
    assert not (folder / ".hkt-lock").exists()
    lock_module.RunLock.acquire(folder).release()


# -- exports -------------------------------------------------------------------------------------

def test_a_failed_export_keeps_the_previous_one_and_leaves_no_temporaries(run_dir, monkeypatch, capsys):
    from hkt_core.train import export as export_module

    assert main(["export", str(run_dir)]) == 0
    target = run_dir / "export" / "child.safetensors"
    good = target.read_bytes()
    orphan = target.with_name(".child.safetensors.deadbeef.tmp")  # a killed export's leftover
    orphan.write_bytes(b"half")
    real = export_module._safetensors

    def differs(run, child, path, inputs, expected):
        real(run, child, path, inputs, expected)
        return 1.0

    monkeypatch.setattr(export_module, "_safetensors", differs)
    capsys.readouterr()
    assert main(["export", str(run_dir)]) == 2
    assert "previous export is kept" in _one_line(capsys)
    assert target.read_bytes() == good
    assert sorted(p.name for p in target.parent.iterdir()) == ["child.safetensors"]


def test_an_export_is_only_renamed_into_place_after_it_verified(run_dir, monkeypatch):
    from hkt_core.train import export as export_module

    seen = []
    real = export_module._safetensors

    def watch(run, child, path, inputs, expected):
        diff = real(run, child, path, inputs, expected)
        seen.append((path.name, (run.path / "export" / "child.safetensors").exists()))
        return diff

    monkeypatch.setattr(export_module, "_safetensors", watch)
    path, _ = export_module.export_run(hkt_core.load_run(run_dir), "safetensors")
    assert seen == [(seen[0][0], False)] and seen[0][0].endswith(".tmp") and path.is_file()


# -- data and shapes -----------------------------------------------------------------------------

def _nan_data_card(tmp_path, *, in_memory: bool) -> PairCard:
    (tmp_path / "nan_data.py").write_text(textwrap.dedent(f"""
        import torch
        from torch.utils.data import TensorDataset
        from hkt_core.data import DatasetBundle
        from test_train_support import TinyImages, make_dataset

        def make():
            bundle = make_dataset()
            x = bundle.train.x.clone()
            x[17, 0, 3, 3] = float("nan")
            data = TensorDataset(x, bundle.train.y) if {in_memory} else TinyImages(x, bundle.train.y)
            return DatasetBundle(data, bundle.test, bundle.input_shapes, bundle.info)
    """), encoding="utf-8")
    data = card_dict("nan-pair")
    data["dataset"], data["dataset_options"] = "nan_data:make", {}
    data["source_folder"] = str(tmp_path)
    return PairCard.from_dict(data)


@pytest.mark.parametrize("in_memory", [True, False])
def test_non_finite_data_is_named_by_split_and_sample(tmp_path, in_memory):
    from hkt_core.train.data import check_finite, load_splits

    card = _nan_data_card(tmp_path, in_memory=in_memory)
    manager = manager_with(card)
    with hkt_core.trust.scope(hkt_core.trust.card_origin(card)):
        if in_memory:
            with pytest.raises(DataError, match=r"sample \d+ of the (training|validation) split holds NaN"):
                load_splits(card, card.train, manager)
        else:
            splits = load_splits(card, card.train, manager)  # not held in memory: looked at when needed
            found = [name for name in ("train", "val") if _raises(check_finite, "nan_data:make", name,
                                                                  getattr(splits, name))]
            assert len(found) == 1
    sys.modules.pop("nan_data", None)


def _raises(check, *args) -> bool:
    try:
        check(*args)
    except DataError as exc:
        assert "holds NaN in its inputs" in str(exc)
        return True
    return False


def test_a_diverging_run_on_non_finite_data_blames_the_data_not_the_learning_rate(tmp_path):
    card = _nan_data_card(tmp_path, in_memory=False)
    manager = manager_with(card)
    from hkt_core.train.api import resolve
    from hkt_core.train.trainer import Trainer

    spec = resolve(card, "baseline", manager=manager, out=tmp_path / "run", epochs=1)
    spec.preflight = False
    with pytest.raises(DataError, match="split holds NaN") as info:
        Trainer(spec).fit()
    assert "learning rate" not in str(info.value)
    sys.modules.pop("nan_data", None)


@pytest.mark.parametrize("shapes", [[[1_000_000_000_000, 12]], [[100_000, 3, 64, 64]], [[1, 3, 100_000, 1000]]])
def test_huge_example_shapes_are_refused_before_anything_is_allocated(shapes):
    data = card_dict()
    data["input_shapes"] = shapes
    with pytest.raises(ConfigError, match="batch dimension may be at most 1024"):
        PairCard.from_dict(data)


def test_a_child_with_nothing_to_train_gets_its_own_fix(tmp_path):
    (tmp_path / "frozen_child.py").write_text(textwrap.dedent("""
        from test_train_support import make_child

        def make():
            return make_child().requires_grad_(False)
    """), encoding="utf-8")
    data = card_dict("frozen-pair")
    data["child"], data["child_options"], data["source_folder"] = "frozen_child:make", {}, str(tmp_path)
    card = PairCard.from_dict(data)
    with pytest.raises(hkt_core.HKTError) as info:
        hkt_core.check_pair(card, manager=manager_with(card), methods=["baseline"], required=["baseline"])
    message = str(info.value)
    assert "nothing to train" in message and "fit the task" not in message
    sys.modules.pop("frozen_child", None)


# -- interruptions -------------------------------------------------------------------------------

def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, capsys):
    manager = manager_with(tiny_card())
    out = tmp_path / "run"

    def ctrl_c(done, record):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        hkt_core.train("tiny-pair", "baseline", manager=manager, out=out, epochs=2, callbacks=[ctrl_c])
    message = str(info.value)
    assert "keeps epoch 1 of 2" in message and f"--out {out} --resume" in message


def test_a_symlinked_export_folder_is_refused(run_dir, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run_dir / "export").symlink_to(elsewhere)
    assert main(["export", str(run_dir)]) == 2
    assert "symbolic link" in _one_line(capsys)
    assert list(elsewhere.iterdir()) == []


def test_crafted_logs_and_huge_model_options_are_one_line(run_dir, capsys):
    from hkt_core.train.identity import read_history

    (run_dir / "history.jsonl").write_text("[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match="history.jsonl: line 1"):
        read_history(run_dir)
    (run_dir / "metrics.jsonl").write_text("[" * 100_000 + "\n" + '{"epoch": 1}\n', encoding="utf-8")
    assert hkt_core.load_run(run_dir).metrics == [{"epoch": 1}]
    (run_dir / ".hkt-lock").write_text("[" * 3000, encoding="utf-8")
    from hkt_core.train.lock import RunLock

    RunLock.acquire(run_dir).release()  # an unreadable lock nobody holds is taken
    with pytest.raises(ConfigError, match="does not fit in memory"):
        build_model("test_train_support:TinyCNN", default_manager(), width=2 ** 40)


def test_a_received_card_cannot_point_its_references_to_another_folder(tmp_path, capsys):
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "planted-ran"
    (planted / "planted_models.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                               f"from test_train_support import make_child\n", encoding="utf-8")
    data = card_dict("pointing-card")
    data["child"], data["child_options"], data["source_folder"] = "planted_models:make_child", {}, str(planted)
    received = tmp_path / "received"
    received.mkdir()
    (received / "pointing-card.toml").write_text(to_toml(data), encoding="utf-8")
    assert main(["pairs", "check", str(received / "pointing-card.toml")]) == 2
    assert "planted_models" in capsys.readouterr().err
    assert not marker.exists() and "planted_models" not in sys.modules
    assert PairCard.from_toml(received / "pointing-card.toml").source_folder == str(received.resolve())
