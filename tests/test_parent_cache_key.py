"""The parent cache is keyed by the architecture too: a model resized under the same name must
not be handed a checkpoint trained for its old shape."""

from __future__ import annotations

from torch import nn

from hkt_core.pairs import PairCard
from hkt_core.train.parents import parent_key, parent_train_config

WIDTH = {"value": 8}


def parent() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, WIDTH["value"]), nn.ReLU(), nn.Linear(WIDTH["value"], 3))


def card() -> PairCard:
    return PairCard.from_dict({
        "name": "resized-pair", "task": "classification", "parent": "test_parent_cache_key:parent",
        "child": "test_parent_cache_key:parent", "input_shapes": [[1, 1, 8, 8]], "dataset": "digits"})


def test_resizing_the_parent_changes_its_cache_key():
    c = card()
    train = parent_train_config(c)
    first = parent_key(c, train)
    assert parent_key(c, train) == first
    WIDTH["value"] = 16
    try:
        assert parent_key(c, train) != first
    finally:
        WIDTH["value"] = 8
    assert parent_key(c, train) == first
