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


def test_the_key_ignores_the_pair_name_stages_child_and_alignment_but_not_data_or_training():
    import attrs

    c = card()
    train = parent_train_config(c)
    key = parent_key(c, train)
    same = attrs.evolve(c, name="another-pair", stages=3, child="test_parent_cache_key:card",
                        alignment=(("1", "1"), ("2", "2")))
    assert parent_key(same, train) == key
    assert parent_key(attrs.evolve(c, dataset_options={"seed": 1}), train) != key
    assert parent_key(c, attrs.evolve(train, lr=0.01)) != key
    assert parent_key(c, attrs.evolve(train, num_workers=2, compile=True)) == key
    assert parent_key(attrs.evolve(c, task="segmentation"), train) != key


def test_the_key_holds_what_the_weights_depend_on_beyond_the_settings(monkeypatch):
    """The thread count (another count sums in another order), the device type the parent trains
    on and the torch version are in the key: a cached parent is never shared between runs that
    would have trained different weights."""
    import attrs
    import torch

    from hkt_core.train import parents

    c = card()
    train = parent_train_config(c)
    assert train.threads == 1
    key = parent_key(c, train)
    assert parent_key(c, attrs.evolve(train, threads=2)) != key
    assert parent_key(c, attrs.evolve(train, device="cuda")) != key
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parent_key(c, attrs.evolve(train, device="auto")) == key   # auto trains on the cpu here
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert parent_key(c, train) != key
    assert parents.KEY_VERSION == 4
