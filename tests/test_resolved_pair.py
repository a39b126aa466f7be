"""One resolved pair: every command works on the same models and example inputs, the trainer's
pre-flight is its dry run (the Family is built once), and a run records the card it ran with."""

from __future__ import annotations

import types

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

import hkt_core
from hkt_core import ConfigError, DatasetBundle, PairCard, registers
from hkt_core.cli.main import main
from hkt_core.plugins import host


class OddParent(nn.Sequential):
    """A parent written for this test: two stages over 6 features, 3 classes."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3))


class OddChild(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))


class _Stated(hkt_core.Adapter):
    """An adapter whose example inputs are a constant: the two models' adapters disagree."""

    value = 0.0

    def example_inputs(self, model, shapes):
        return tuple(torch.full(tuple(s), self.value) for s in shapes)


class ParentAdapter(_Stated):
    model_classes = (OddParent,)
    value = 5.0


class ChildAdapter(_Stated):
    model_classes = (OddChild,)
    value = -3.0


def rows(*, broken: bool = False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(90, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    if broken:
        raise ConfigError("rows: no data here")
    return DatasetBundle(train=TensorDataset(x[:60], y[:60]), test=TensorDataset(x[60:], y[60:]),
                         input_shapes=((6,),), info={"num_classes": 3})


def _card(name: str, dataset: str) -> PairCard:
    return PairCard.from_dict({"name": name, "description": "two adapters that disagree", "task": "classification",
                               "parent": "odd-parent", "child": "odd-child", "dataset": dataset,
                               "input_shapes": [[4, 6]], "stages": 3,
                               "train": {"epochs": 1, "batch_size": 20, "lr": 0.05, "device": "cpu"},
                               "parent_train": {"epochs": 12, "lr": 0.1}})


def _named(fn, name):
    fn.__name__ = name
    return fn


@pytest.fixture
def manager(monkeypatch):
    plugin = types.SimpleNamespace(
        hkt_register_models=registers()(_named(lambda: {"odd-parent": OddParent, "odd-child": OddChild},
                                               "hkt_register_models")),
        hkt_register_adapters=registers()(_named(lambda: {"odd-parent": ParentAdapter(), "odd-child": ChildAdapter()},
                                                 "hkt_register_adapters")),
        hkt_register_datasets=registers()(_named(lambda: {"odd-rows": rows, "odd-broken": lambda: rows(broken=True)},
                                                 "hkt_register_datasets")),
        hkt_register_pairs=registers()(_named(lambda: {"odd-data": _card("odd-data", "odd-rows"),
                                                       "odd-nodata": _card("odd-nodata", "odd-broken")},
                                              "hkt_register_pairs")))
    made = hkt_core.get_plugin_manager(plugins={"odd-models": plugin})
    monkeypatch.setattr(host, "_default", made)   # what the CLI's default_manager() returns
    return made


@pytest.fixture
def traced(monkeypatch):
    """Every example input the alignment traces a model on: (model class, inputs)."""
    import importlib

    api = importlib.import_module("hkt_core.align.api")  # `hkt_core.align` is the function

    seen: list[tuple[str, tuple[torch.Tensor, ...]]] = []
    real = api.trace

    def recording(model, example_inputs, *args, **kwargs):
        inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        seen.append((type(model).__name__, tuple(t.detach().clone() for t in inputs)))
        return real(model, example_inputs, *args, **kwargs)

    monkeypatch.setattr(api, "trace", recording)
    return seen


def _same_inputs(a, b) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("pair_name", ["odd-data", "odd-nodata"])
def test_align_and_train_trace_the_same_example_inputs(manager, traced, tmp_path, capsys, pair_name):
    """`hkt align PAIR` and `hkt train PAIR` align on the same tensors, although the parent's and the
    child's adapters make different ones: a batch of the pair's data when it loads, else the inputs
    the child's adapter makes for the card's shapes (the data set of ``odd-nodata`` does not load, so
    its training stops at the pre-flight's data check - after the same alignment inputs were made)."""
    assert main(["align", pair_name]) == 0
    from_align = [inputs for _, inputs in traced]
    assert {name for name, _ in traced} == {"OddParent", "OddChild"}
    traced.clear()
    pair = hkt_core.resolve_pair(pair_name, manager)
    expected = pair.example_inputs
    if pair_name == "odd-data":
        assert pair.example_source.startswith("data set odd-rows (train split, 4 samples)")
        assert main(["train", pair_name, "--method", "hkt", "--out", str(tmp_path / "run")]) == 0
        from_train = [inputs for _, inputs in traced]
        assert from_train and all(_same_inputs(inputs, expected) for inputs in from_train + from_align)
        # the parent's adapter would have made 5.0s: neither command used them
        assert not any(torch.all(inputs[0] == 5.0) for inputs in from_align)
    else:
        assert "input_shapes" in pair.example_source
        assert all(torch.all(inputs[0] == -3.0) for inputs in from_align)   # the child's adapter's
        assert all(_same_inputs(inputs, expected) for inputs in from_align)


def test_a_resolved_pair_builds_each_model_once(manager, monkeypatch):
    built: list[str] = []
    real = hkt_core.models.build_model

    def counting(ref, *args, **kwargs):
        built.append(ref)
        return real(ref, *args, **kwargs)

    import importlib

    monkeypatch.setattr(importlib.import_module("hkt_core.train.resolved"), "build_model", counting)
    pair = hkt_core.resolve_pair("odd-data", manager)
    assert pair.parent is pair.parent and pair.child is pair.child
    assert pair.example_inputs[0].shape == (4, 6) and pair.example_inputs[0].dtype == torch.float32
    assert built == ["odd-parent", "odd-child"]
    with pytest.raises(ConfigError, match="role 'teacher' is invalid: one of parent, child"):
        pair.model("teacher")


def test_train_builds_the_family_once_and_the_run_records_the_card_it_ran_with(tmp_path, monkeypatch):
    """The done-when of the resolved pair: one Family per `hkt train --method hkt`, and the run's
    card holds the `--set` it ran with (the parent comes from a weights file: no parent training)."""
    manager = hkt_core.default_manager()
    if "digits-demo" not in manager.registry("pairs"):
        pytest.skip("digits-demo comes with the hkt-vision plugin, not installed here")
    card = manager.lookup("pairs", "digits-demo")
    parent = hkt_core.build_model(card.parent, manager, **card.parent_options)
    weights = tmp_path / "parent.safetensors"
    save_file({k: v.contiguous() for k, v in parent.state_dict().items()}, str(weights))
    from hkt_core.family import Family

    builds = []
    real_init = Family.__init__

    def counting(self, *args, **kwargs):
        builds.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Family, "__init__", counting)
    out = tmp_path / "R"
    assert main(["train", "digits-demo", "--method", "hkt", "--epochs", "1", "--set", "hkt.lam=0.3",
                 "--set", "train.train_samples=200", "--parent-weights", str(weights), "--out", str(out)]) == 0
    assert len(builds) == 1
    run = hkt_core.load_run(out)
    assert run.card.hkt.lam == 0.3
    assert run.card.train.epochs == 1 and run.card.train.train_samples == 200
    assert run.card_as_written.hkt.lam == card.hkt.lam     # the card file's own value, kept for identity


def test_a_plugin_command_that_collides_with_a_core_command_is_reported_naming_both(monkeypatch, capsys):
    def configure(parser):
        parser.set_defaults(handler=lambda args: 0)

    plugin = types.SimpleNamespace(hkt_register_commands=registers()(_named(lambda: {"train": configure},
                                                                            "hkt_register_commands")))
    made = hkt_core.get_plugin_manager(plugins={"clash": plugin})
    monkeypatch.setattr(host, "_default", made)
    assert main(["plugins", "list"]) == 0
    captured = capsys.readouterr()
    said = ("command 'train' of plugin 'clash' collides with command 'train' of plugin 'core', which wins: "
            "plugin 'clash''s is not available; rename it in that plugin")
    assert f"hkt: warning: {said}" in captured.err            # on every command
    assert f"  problems: {said}" in captured.out              # and in the listing, under the plugin
    assert main(["plugins", "list", "--json"]) == 0
    import json

    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["clash"]["problems"] == [said]
