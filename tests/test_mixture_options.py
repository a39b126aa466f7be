"""Mixtures with their own options and feature losses; one direction vocabulary."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hkt_core
from hkt_core import HKTConfig, builtins, hookimpl
from hkt_core.errors import ConfigError


def core(**more):
    return hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins, **more})


# -- mixtures with options and a feature loss ------------------------------------------------------
class ScaledAdd(hkt_core.Mixture):
    """Mixes like 'add' and adds ``beta`` times the MSE between donor and receiver to L1."""

    def __init__(self, lam=0.6, tokens="auto", *, beta):
        super().__init__(lam, tokens)
        self.beta = beta

    def forward(self, receiver, donor):
        from hkt_core.etm import MixOutput

        return MixOutput(receiver + self.lam * donor, self.beta * F.mse_loss(donor, receiver))


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, width), nn.Linear(width, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def mixing_manager():
    plugin = types.SimpleNamespace(hkt_register_mixtures=hookimpl(lambda registry: registry.add("scaled", ScaledAdd)))
    return core(extra=plugin)


class Task:
    def loss(self, prediction, target):
        return F.cross_entropy(prediction, target)

    def inherit_loss(self, prediction, target):
        return (prediction.softmax(1) - F.one_hot(target, 3).to(prediction.dtype)).abs().mean()


def test_a_mixture_that_mixes_and_adds_a_loss_needs_no_family_change(mixing_manager):
    torch.manual_seed(0)
    parent, child, x = MLP(8).double(), MLP(4).double(), torch.randn(5, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    config = HKTConfig(mixture="scaled", mixture_options={"beta": 0.5}, directions="to_child", alphas=(0.3, 0.7, 0.0),
                       inherit_loss="mae")
    fam = hkt_core.Family(parent, child, [("fc1", "fc1"), ("fc2", "fc2")], config, example_inputs=x,
                          task=Task(), manager=mixing_manager)
    out = fam(x)
    donor = fam.points[0].to_child_transfer(parent.fc1(x))
    receiver = child.fc1(x)
    torch.testing.assert_close(out.feature_loss, 0.5 * ((donor - receiver) ** 2).mean())
    torch.testing.assert_close(out.inherited, child.fc2(torch.relu(receiver + 0.6 * donor)))
    parts = fam.loss_parts(out, y)
    torch.testing.assert_close(parts.l1, Task().inherit_loss(out.inherited, y) + out.feature_loss)
    torch.testing.assert_close(parts.total, 0.3 * parts.l1 + 0.7 * parts.l2)


def test_mixture_options_are_checked(mixing_manager):
    with pytest.raises(ConfigError, match=r"mixture_options = \{'gamma': 1\} do not fit mixture 'scaled'"):
        hkt_core.Family(MLP(8), MLP(4), [("fc1", "fc1"), ("fc2", "fc2")],
                        HKTConfig(mixture="scaled", mixture_options={"gamma": 1}),
                        example_inputs=torch.randn(2, 6), manager=mixing_manager)
    with pytest.raises(ConfigError, match="HKTConfig.mixture_options = 3 is invalid: must be a table"):
        HKTConfig(mixture_options=3)
    from hkt_core.config import structure, to_toml, unstructure

    cfg = HKTConfig(mixture="scaled", mixture_options={"beta": 0.25})
    assert structure(unstructure(cfg), HKTConfig) == cfg
    assert "beta = 0.25" in to_toml({"hkt": unstructure(cfg)})


# -- one direction vocabulary -------------------------------------------------------------------------
def test_directions_have_one_vocabulary_and_old_spellings_still_read():
    assert HKTConfig(directions="backbone", alphas=(0.3, 0.7, 0.0)).directions == "to_child"
    assert HKTConfig(directions=["head", "both"]).directions == ("to_parent", "both")
    from hkt_core.config import structure

    assert structure({"directions": ["backbone", "to_parent"]}, HKTConfig).directions == ("to_child", "to_parent")
    with pytest.raises(ConfigError, match="each entry must be one of both, to_child, to_parent"):
        HKTConfig(directions="sideways")


def test_a_run_started_with_an_old_direction_spelling_resumes(tmp_path):
    from test_train_support import manager_with, tiny_card

    manager = manager_with(tiny_card())
    hkt = {"directions": "to_child", "alphas": [0.3, 0.7, 0.0]}
    run = hkt_core.train("tiny-pair", "hkt", manager=manager, out=tmp_path / "r", epochs=1, hkt=hkt)
    config = run.path / "config.toml"
    text = config.read_text()
    assert 'directions = "to_child"' in text
    config.write_text(text.replace('directions = "to_child"', 'directions = "backbone"'))   # as older hkt wrote it
    again = hkt_core.train("tiny-pair", "hkt", manager=manager, out=tmp_path / "r", epochs=1, hkt=hkt, resume=True)
    assert again.summary["epochs"] == 1


def test_mixture_options_are_set_like_any_setting():
    from hkt_core.train.api import resolve
    from test_train_support import manager_with, tiny_card

    spec = resolve(tiny_card(), "hkt", out="unused", manager=manager_with(tiny_card()),
                   settings=["hkt.mixture_options.beta=0.1", "hkt.directions=backbone", "hkt.alphas=[0.3, 0.7, 0.0]"])
    assert spec.hkt.mixture_options == {"beta": 0.1} and spec.hkt.directions == "to_child"
    with pytest.raises(ConfigError, match="unknown setting 'mixture_option'"):
        resolve(tiny_card(), "hkt", out="unused", manager=manager_with(tiny_card()),
                settings=["hkt.mixture_option=1"])
