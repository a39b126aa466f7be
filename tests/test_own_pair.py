"""A user's own pair, first class: `hkt pairs new | add | check | list | remove`, the pre-flight of
`hkt train` (no run folder on a mismatch), alignment.json in HKT run folders.

The pair is written fresh by each test into a temporary folder: a tabular data set, a small
transformer parent (feature tokens, hand-written attention) and an MLP child, in a module with a
name no other test uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

import hkt_core
from hkt_core.cli.main import main
from hkt_core.train.preflight import PairCheckError, check_pair
from hkt_core.pairs import PairCard

MODELS = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset

from hkt_core.data import DatasetBundle

FEATURES, CLASSES = 12, 3


def table(n_train: int = 120, n_test: int = 40, label_offset: int = 0):
    """Tabular rows of 12 features, 3 classes from a fixed linear rule."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(FEATURES, CLASSES, generator=g)

    def draw(n):
        x = torch.randn(n, FEATURES, generator=g)
        return TensorDataset(x, (x @ w).argmax(1) + label_offset)

    return DatasetBundle(draw(n_train), draw(n_test), ((FEATURES,),), {"num_classes": CLASSES})


class TokenMixer(nn.Module):
    """A transformer parent: each feature is a token, one attention block, tokens flattened (the
    head sees which feature each token is: a parent that learns the rule)."""

    def __init__(self, dim: int = 8, classes: int = CLASSES):
        super().__init__()
        self.embed = nn.Linear(1, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim * FEATURES, classes)

    def forward(self, x):
        t = self.embed(x.unsqueeze(-1))
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(1, 2) / 8 ** 0.5, dim=-1)
        t = self.norm(t + att @ v)
        t = t + self.ff(t)
        return self.head(t.flatten(1))


def mlp(hidden: int = 16, classes: int = CLASSES, inputs: int = FEATURES):
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, classes))
'''


def write_pair(folder, name="tab-mixer-mlp", child_options="", dataset_options="", epochs=1):
    """The model module and a card beside it; returns (card path, module name)."""
    module = f"user_tabular_{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(MODELS, encoding="utf-8")
    card = folder / f"{name}.toml"
    card.write_text(f'''
name = "{name}"
task = "classification"
parent = "{module}:TokenMixer"
child = "{module}:mlp"
dataset = "{module}:table"
input_shapes = [[1, 12]]
stages = 2

[child_options]
{child_options}

[dataset_options]
{dataset_options}

[train]
epochs = {epochs}
batch_size = 30
lr = 0.01
optimizer = "adamw"
val_fraction = 0.2

[parent_train]
epochs = 8
''', encoding="utf-8")
    return card, module


@pytest.fixture
def pair_on_path(tmp_path, monkeypatch):
    """The pair with its folder importable (in-process tests of the check itself)."""
    card, _ = write_pair(tmp_path / "cards")
    monkeypatch.syspath_prepend(str(card.parent))
    return PairCard.from_toml(card)


def test_check_pair_reports_every_method(pair_on_path):
    report = check_pair(pair_on_path)
    assert report.samples == {"train": 96, "val": 24, "test": 40}
    assert report.num_classes == 3 and report.prediction_shape == (2, 3)
    ran = {m.name for m in report.methods if m.applies}
    assert {"parent", "baseline", "kd", "hkt"} <= ran
    assert report.alignment is not None and report.alignment.stages == 2
    assert all(m.loss is not None and m.loss == m.loss for m in report.methods if m.applies)
    text = "\n".join(report.lines())
    assert "ok" in text.splitlines()[0] and "mixing at" in text


def test_check_pair_leaves_the_callers_random_state_alone(pair_on_path):
    import torch

    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    check_pair(pair_on_path, methods=["baseline"], required=["baseline"])
    assert torch.equal(torch.rand(3), expected)


def test_a_class_count_fix_without_such_an_option_lists_the_factorys_options(tmp_path, monkeypatch):
    import types

    from hkt_core.train.preflight import _Check, factory_options

    (tmp_path / "fixed_models_mod.py").write_text("def fixed(width: int = 8, *, depth: int = 2):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert factory_options("fixed_models_mod:fixed", None) == ["width", "depth"]
    fix = _Check.class_count_fix(types.SimpleNamespace(manager=None), "child", "fixed_models_mod:fixed", 3)
    assert fix == ("build the child with 3 outputs: its factory 'fixed_models_mod:fixed' has no class-count "
                   "option (its options: width, depth); change the model, or give it one")


@pytest.mark.parametrize("change, words", [
    # the fix names the factory's own option, read from its signature (the factories take `classes`)
    ({"child_options": {"classes": 5}}, ["child", "predicts 5 classes", "has 3 classes", "[child_options] classes = 3"]),
    ({"parent_options": {"classes": 4}}, ["parent", "predicts 4 classes", "has 3 classes",
                                          "[parent_options] classes = 3"]),
    ({"child_options": {"inputs": 10}}, ["child", "fails on a batch", "(2, 12)", "mat1 and mat2"]),
    ({"input_shapes": [[1, 10]]}, ["yields inputs of shape (12,)", "expects (10,)"]),
    ({"dataset_options": {"label_offset": 7}}, ["cannot score", "fix:"]),
    ({"parent_options": {"dim": "eight"}}, ["the parent cannot be built", "rejected options", "[parent_options]"]),
])
def test_a_mismatch_is_one_line_naming_problem_and_fix(pair_on_path, change, words):
    import attrs

    card = attrs.evolve(pair_on_path, **change)
    with pytest.raises(PairCheckError) as info:
        check_pair(card, methods=["baseline"], required=["baseline"])
    message = str(info.value)
    assert "\n" not in message and "fix:" in message
    for word in words:
        assert word in message, message


def test_a_method_that_does_not_apply_is_listed_with_its_reason(pair_on_path):
    from hkt_core.errors import ConfigError
    from hkt_core.train.methods import BaselineMethod

    class NeedsTokens(BaselineMethod):
        def __init__(self, ctx):
            raise ConfigError("this method needs a token child")

    manager = hkt_core.get_plugin_manager()
    manager.registry("methods").add("needs-tokens", NeedsTokens, plugin="test")
    report = check_pair(pair_on_path, manager=manager, methods=["baseline", "needs-tokens"])
    skipped = [m for m in report.methods if not m.applies]
    assert [(m.name, m.detail) for m in skipped] == [("needs-tokens", "this method needs a token child")]
    assert any("not apply  needs-tokens: this method needs a token child" in line for line in report.lines())
    with pytest.raises(PairCheckError, match="method 'needs-tokens' cannot train this pair: this method needs"):
        check_pair(pair_on_path, manager=manager, methods=["needs-tokens"], required=["needs-tokens"])

    class Crashes(BaselineMethod):
        def training_step(self, inputs, target):
            raise RuntimeError("index out of range in the plugin")

    manager.registry("methods").add("crashes", Crashes, plugin="test")
    report = check_pair(pair_on_path, manager=manager, methods=["baseline", "crashes"])
    assert [m.detail for m in report.methods if not m.applies] == [
        "failed on this pair: one training step of method 'crashes' failed (RuntimeError: index out of range in "
        "the plugin)"]
    with pytest.raises(PairCheckError, match="one training step of method 'crashes' failed") as info:
        check_pair(pair_on_path, manager=manager, methods=["crashes"], required=["crashes"])
    assert info.value.stage == "methods"


def test_train_refuses_a_wrong_class_count_before_any_run_folder(pair_on_path, tmp_path, capsys):
    import attrs

    bad = attrs.evolve(pair_on_path, child_options={"classes": 5})
    out = tmp_path / "runs" / "r"
    with pytest.raises(PairCheckError, match="predicts 5 classes but data set .* has 3 classes"):
        hkt_core.train(bad, "hkt", out=out)
    assert not out.exists() and not (tmp_path / "runs").exists()
    assert not list((hkt_core.pairs.hkt_home() / "parents").glob("*")) if (
        hkt_core.pairs.hkt_home() / "parents").exists() else True


def test_hkt_run_records_its_alignment_and_resume_reads_it(pair_on_path, tmp_path, capsys):
    from hkt_core.align import Alignment

    run = hkt_core.train(pair_on_path, "hkt", out=tmp_path / "r", epochs=1)
    recorded = Alignment.from_json((tmp_path / "r" / "alignment.json").read_text())
    assert recorded == run.alignment and recorded.stages == 2
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("hkt: alignment: "))
    assert "mixing at" in line and recorded.mixing_pairs[0].parent in line
    baseline = hkt_core.train(pair_on_path, "baseline", out=tmp_path / "b", epochs=1)
    assert baseline.alignment is None and not (tmp_path / "b" / "alignment.json").exists()


# -- the command line --------------------------------------------------------------------------

def test_pairs_new_writes_a_card_that_add_and_check_accept(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cards"
    _, module = write_pair(folder)
    monkeypatch.syspath_prepend(str(folder))
    target = folder / "new-pair.toml"
    assert main(["pairs", "new", "new-pair", "--parent", f"{module}:TokenMixer", "--child", f"{module}:mlp",
                 "--dataset", f"{module}:table", "--stages", "2", "-o", str(target)]) == 0
    text = target.read_text()
    card = PairCard.from_toml(target)
    assert card.input_shapes == ((1, 12),) and card.stages == 2 and card.task == "classification"
    assert "# the data set has 3 classes" in text and "# hidden = 16" in text and "# n_train = 120" in text
    # a new card starts from the benchmark's best measured settings, and says so; the paper is a preset
    assert (card.hkt.inherit_loss, card.hkt.alphas, card.hkt.lam) == ("task", (0.1, 0.8, 0.1), 0.6)
    assert (card.train.kd_temperature, card.train.kd_weight, card.train.threads) == (None, None, 1)
    assert "docs/RESULTS.md" in text and "--set hkt.preset=paper" in text
    assert main(["pairs", "new", "new-pair", "--parent", "x:y", "--child", "x:y", "--dataset", "d",
                 "-o", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["pairs", "check", str(target), "--methods", "baseline,hkt"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pair new-pair: ok") and "hkt (loss" in out
    assert main(["pairs", "add", str(target)]) == 0
    assert PairCard.from_toml(hkt_core.pairs.user_pairs_dir() / "new-pair.toml").name == "new-pair"


def test_pairs_new_loads_the_data_set_with_the_options_given(tmp_path, monkeypatch, capsys):
    """A data set that needs an option (a folder, say) is loaded with --dataset-option KEY=VALUE,
    which the card keeps; without it the error names the flag and no card is written."""
    folder = tmp_path / "cards"
    _, module = write_pair(folder)
    (folder / f"{module}_needs.py").write_text(
        f"from {module} import table\n\ndef rows(n_train, label_offset=0):\n"
        f"    return table(n_train=n_train, label_offset=label_offset)\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    target = folder / "opt-pair.toml"
    args = ["pairs", "new", "opt-pair", "--parent", f"{module}:TokenMixer", "--child", f"{module}:mlp",
            "--dataset", f"{module}_needs:rows", "-o", str(target)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_train" in err[0] and "--dataset-option KEY=VALUE" in err[0] and not target.exists()
    assert main([*args, "--dataset-option", "n_train=90", "--dataset-option", "label_offset = 0"]) == 0
    card = PairCard.from_toml(target)
    assert card.dataset_options == {"n_train": 90, "label_offset": 0} and card.input_shapes == ((1, 12),)
    assert main([*args, "--force", "--dataset-option", "n_train"]) == 2
    assert "--dataset-option 'n_train' is invalid: KEY=VALUE" in capsys.readouterr().err


def test_pairs_list_user_and_remove(tmp_path, capsys):
    card, _ = write_pair(tmp_path / "cards", name="mine-one")
    assert main(["pairs", "add", str(card)]) == 0
    capsys.readouterr()
    assert main(["pairs", "list", "--user"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mine-one") and "mine-one.toml" in out and "digits-demo" not in out
    assert main(["pairs", "list"]) == 0
    assert "mine-one" in capsys.readouterr().out
    assert main(["pairs", "remove", "digits-demo"]) == 2
    assert "comes from plugin 'vision'" in capsys.readouterr().err
    assert main(["pairs", "remove", "mine-one"]) == 0
    assert "mine-one" not in hkt_core.default_manager().registry("pairs")
    assert main(["pairs", "remove", "mine-one"]) == 2
    assert "no card named 'mine-one'" in capsys.readouterr().err


def test_card_layouts_are_read_and_checked(tmp_path):
    card, _ = write_pair(tmp_path / "cards")
    text = card.read_text() + '\n[alignment]\nlayouts = {"ff" = "tokens", "child:1" = "vector"}\n'
    card.write_text(text)
    parsed = PairCard.from_toml(card)
    assert parsed.layouts == {"ff": "tokens", "child:1": "vector"} and parsed.alignment is None
    assert PairCard.from_toml(card).to_dict()["alignment"] == {"layouts": {"ff": "tokens", "child:1": "vector"}}
    card.write_text(text.replace('"vector"', '"channels_last"'))
    with pytest.raises(hkt_core.ConfigError, match=r"layouts\['child:1'\] = 'channels_last' is invalid: one of map, "):
        PairCard.from_toml(card)


def test_stages_option_reuses_the_cached_parent(tmp_path, capsys):
    from test_train_support import manager_with, tiny_card

    manager = manager_with(tiny_card("tiny-stages"))
    first = hkt_core.train("tiny-stages", "hkt", manager=manager, out=tmp_path / "two", epochs=1)
    assert first.alignment.stages == 2
    capsys.readouterr()
    again = hkt_core.train("tiny-stages", "hkt", manager=manager, out=tmp_path / "three", epochs=1,
                           settings=["card.stages=3"])
    err = capsys.readouterr().err
    assert again.alignment.stages == 3 and "using the cached parent" in err and "training it first" not in err
    assert again.config["card"]["stages"] == 3
    assert hkt_core.train("tiny-stages", "hkt", manager=manager, out=tmp_path / "three-b", epochs=1,
                          stages=3).alignment == again.alignment
    with pytest.raises(hkt_core.ConfigError, match="PairCard.stages = 1 is invalid"):
        hkt_core.train("tiny-stages", "hkt", manager=manager, out=tmp_path / "one", stages=1)
    assert not (tmp_path / "one").exists()
    capsys.readouterr()
    assert main(["train", "digits-demo", "--method", "hkt", "--set", "card.name=x"]) == 2
    assert "unknown setting 'name'; allowed: stages" in capsys.readouterr().err


def test_a_missing_name_mentions_the_plugins_that_failed_to_load():
    import types

    from hkt_core.plugins.markers import hookimpl

    @hookimpl
    def hkt_register_pairs(registry):
        raise RuntimeError("its data folder is missing")

    manager = hkt_core.get_plugin_manager(plugins={"my-tabular": types.SimpleNamespace(hkt_register_pairs=hkt_register_pairs)})
    with pytest.raises(hkt_core.RegistryError) as info:
        manager.lookup("pairs", "tab-pair")
    message = str(info.value)
    assert message.startswith("unknown pairs 'tab-pair'")
    assert "; plugin 'my-tabular' failed to load: RuntimeError: its data folder is missing" in message
    assert "plugin 'my-tabular'" not in str(pytest.raises(hkt_core.RegistryError, hkt_core.lookup, "pairs", "tab-pair").value)


def test_card_layouts_reach_the_family(pair_on_path):
    import attrs

    card = attrs.evolve(pair_on_path, alignment=(("norm", "3"),), hkt=hkt_core.HKTConfig(
        extractor="pool", directions="backbone", alphas=(0.3, 0.7, 0.0)))
    as_tokens = check_pair(card, methods=["hkt"], required=["hkt"])
    as_map = attrs.evolve(card, layouts={"parent:norm": "map"})
    from hkt_core.train.methods import HKTMethod
    from hkt_core.train.method import MethodContext
    from hkt_core.models import build_model
    import torch

    def family(c):
        manager = hkt_core.default_manager()
        parent, child = (build_model(c.parent, manager, **c.parent_options),
                         build_model(c.child, manager, **c.child_options))
        ctx = MethodContext(child=child, task=hkt_core.lookup("losses", "classification"), train=c.train,
                            hkt=c.hkt, card=c, parent=parent.requires_grad_(False), example_inputs=(torch.randn(1, 12),))
        return HKTMethod(ctx).family

    assert as_tokens.alignment.mixing_pairs[0].parent == "norm"
    assert family(card).points[0].to_child_transfer is not None
    tokens_plan, map_plan = family(card)._plan[0], family(as_map)._plan[0]
    assert tokens_plan.parent_receiver_kind == "tokens" and map_plan.parent_receiver_kind == "map"


# -- the contract kit --------------------------------------------------------------------------

def test_check_all_limited_to_one_plugin(pair_on_path):
    from hkt_core.testing import contracts

    manager = hkt_core.get_plugin_manager()
    manager.registry("pairs").add(pair_on_path.name, pair_on_path, plugin="my-tabular")
    manager.plugins["my-tabular"] = hkt_core.plugins.PluginInfo("my-tabular", None, None)
    assert contracts.check_all("pairs", manager, plugin="my-tabular") == ["tab-mixer-mlp"]
    assert contracts.check_all("models", manager, plugin="my-tabular") == []
    assert set(contracts.check_all("losses", manager, plugin="core")) >= {"classification"}
    with pytest.raises(hkt_core.RegistryError, match="unknown plugin 'my-tabulr'; closest: my-tabular"):
        contracts.check_all("pairs", manager, plugin="my-tabulr")


def test_models_and_pairs_contracts_name_what_is_broken(pair_on_path):
    import attrs
    from torch import nn

    from hkt_core.testing import contracts

    class Declares(hkt_core.Adapter):
        model_names = ("tab-declared",)

        def declared_blocks(self, model):
            return ["embed", "no_such_block"]

    manager = hkt_core.get_plugin_manager()
    manager.registry("adapters").add("declares", Declares(), plugin="test")
    manager.registry("models").add("tab-declared", lambda: nn.Sequential(nn.Linear(12, 3)), plugin="test",
                                   input_shapes=[[1, 12]])
    with pytest.raises(AssertionError, match="model 'tab-declared': a block its adapter declares is not in its trace"):
        contracts.check_entry("models", "tab-declared", manager)
    contracts.check_model(pair_on_path.parent, manager=manager, input_shapes=[[2, 12]])
    bad = attrs.evolve(pair_on_path, child_options={"classes": 5})
    with pytest.raises(AssertionError, match="pair 'tab-mixer-mlp' fails its pre-flight: .*predicts 5 classes"):
        contracts.check_pair_card("tab-mixer-mlp", bad, manager)


def test_a_pair_whose_data_needs_a_folder_is_checked_without_data():
    from hkt_core.testing import contracts

    card = hkt_core.lookup("pairs", "cifar-resnet56-resnet20")
    assert "root" not in card.dataset_options
    contracts.check_entry("pairs", "cifar-resnet56-resnet20")
    from hkt_core.train.preflight import check_outputs, needs_user_folder

    manager = hkt_core.default_manager()
    assert needs_user_folder(card, manager) and not needs_user_folder(hkt_core.lookup("pairs", "digits-demo"), manager)
    check_outputs(card, manager)  # `hkt pairs add` leaves such a card's data to the pre-flight of `hkt train`
    with pytest.raises(PairCheckError) as info:
        check_pair(card, methods=["baseline"])
    assert info.value.stage == "data"


# -- done when: a held-back pair from another folder, through the real command -----------------

def _hkt(args, cwd, home):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HKT_HOME=str(home), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "hkt_core.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.subprocess
def test_user_pair_from_another_folder_adds_checks_and_trains(tmp_path, isolated_home):
    card, module = write_pair(tmp_path / "elsewhere" / "cards")
    bad, _ = write_pair(tmp_path / "elsewhere" / "bad", name="tab-wrong-classes", child_options="classes = 5")
    work = tmp_path / "work"
    work.mkdir()
    done = _hkt(["pairs", "add", str(card)], work, isolated_home)
    assert done.returncode == 0, done.stderr
    done = _hkt(["pairs", "add", str(bad)], work, isolated_home)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "predicts 5 classes" in lines[0] and "has 3 classes" in lines[0]
    assert not (isolated_home / "pairs" / "tab-wrong-classes.toml").exists()
    done = _hkt(["pairs", "check", "tab-mixer-mlp"], work, isolated_home)
    assert done.returncode == 0 and "hkt (loss" in done.stdout, done.stderr
    done = _hkt(["train", "tab-mixer-mlp", "--method", "hkt", "--out", "runs/hkt", "--no-progress"], work,
                isolated_home)
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "runs" / "hkt" / "alignment.json").read_text())["pairs"]
    assert "hkt: alignment: 2HKT, mixing at" in done.stderr
    # a card that reached the user's folder without `hkt pairs add` meets the same check in `hkt train`
    stored = PairCard.from_toml(bad).to_toml()
    (isolated_home / "pairs" / "tab-wrong-classes.toml").write_text(stored, encoding="utf-8")
    done = _hkt(["train", "tab-wrong-classes", "--method", "hkt", "--out", "runs/bad"], work, isolated_home)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "predicts 5 classes" in lines[0] and "has 3 classes" in lines[0], done.stderr
    assert not (work / "runs" / "bad").exists()
    assert module not in sys.modules


@pytest.mark.subprocess
def test_the_console_script_finds_a_module_in_the_current_folder(tmp_path, isolated_home):
    from pathlib import Path

    folder = tmp_path / "cards"
    _, module = write_pair(folder)
    script = Path(sys.executable).with_name("hkt")
    assert script.is_file(), "the hkt console script is installed beside the interpreter"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HKT_HOME=str(isolated_home), OMP_NUM_THREADS="1")
    done = subprocess.run([str(script), "pairs", "new", "here-pair", "--parent", f"{module}:TokenMixer", "--child",
                           f"{module}:mlp", "--dataset", f"{module}:table", "-o", "here.toml"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert PairCard.from_toml(folder / "here.toml").input_shapes == ((1, 12),)
