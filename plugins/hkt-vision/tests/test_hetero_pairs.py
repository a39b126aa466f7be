"""The heterogeneous pairs' parts: generated tabular data, the transformers, one HKT step each."""

import pytest
import torch

import hkt_core
from hkt_core.align import analyse
from hkt_core.config import HKTConfig
from hkt_core.models import build_model
from hkt_vision.data import tabular
from hkt_vision.models import digits_vit, tabular_transformer

HETERO = ["hetero-digits-vit-cnn", "hetero-digits-cnn-vit", "hetero-tabular-transformer-mlp"]


def test_tabular_data_is_generated_standardised_and_deterministic():
    a, b = tabular(n_samples=400, seed=3), tabular(n_samples=400, seed=3)
    assert (len(a.train), len(a.test)) == (300, 100) and a.input_shapes == ((20,),)
    x = torch.stack([a.train[i][0] for i in range(len(a.train))])
    assert x.mean(0).abs().max() < 1e-4 and (x.std(0) - 1).abs().max() < 1e-2
    assert torch.equal(a.test[5][0], b.test[5][0]) and a.info["num_classes"] == 4
    with pytest.raises(ValueError, match="at least 100 rows"):
        tabular(n_samples=50)


def test_the_transformers_read_as_tokens_with_a_class_token():
    bg = analyse(digits_vit(), torch.randn(2, 1, 8, 8))
    deep = bg.kinds["blocks.1"]
    assert (deep.kind, deep.class_token, deep.grid) == ("tokens", True, (4, 4))
    bg = analyse(tabular_transformer(), torch.randn(2, 20))
    assert (bg.kinds["blocks.0"].kind, bg.kinds["blocks.0"].class_token) == ("tokens", True)


@pytest.mark.parametrize("pair", HETERO)
def test_each_heterogeneous_pair_trains_a_step_across_kinds(pair):
    manager = hkt_core.get_plugin_manager()
    card = manager.lookup("pairs", pair)
    torch.manual_seed(0)
    parent = build_model(card.parent, manager, **card.parent_options)
    child = build_model(card.child, manager, **card.child_options)
    x = torch.randn(4, *card.input_shapes[0][1:])
    alignment = hkt_core.align(parent, child, x, stages=card.stages)
    family = hkt_core.Family(parent, child, alignment, HKTConfig(alphas=(0.2, 0.6, 0.2), inherit_loss="task"),
                             manager=manager)
    out = family(x)
    family.loss(out, torch.arange(4) % 4).backward()
    assert not torch.allclose(out.inherited, out.native)
    assert all(p.grad is not None for p in family.points.parameters())
