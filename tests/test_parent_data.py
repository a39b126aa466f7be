"""The parent's own data (``[parent_dataset_options]``) and deterministic parent training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import hkt_core
from hkt_core.errors import ConfigError
from hkt_core.pairs import PairCard
from hkt_core.train.data import load_splits
from hkt_core.train.parents import parent_key, parent_train_config, sha256_file, weights_sha256
from test_train_support import HERE, card_dict, cards_plugin, make_dataset

SEEN: list[dict] = []


def counted_dataset(n_train: int = 200, **options):
    """The tiny data set, remembering the options each call was made with."""
    SEEN.append({"n_train": n_train, **options})
    return make_dataset(n_train=n_train, **options)


def card(**extra) -> PairCard:
    data = card_dict("parent-data-pair")
    data["dataset"] = "test_parent_data:counted_dataset"
    data["dataset_options"] = {"n_train": 100}
    data.update(extra)
    return PairCard.from_dict(data)


def test_parent_dataset_options_replace_the_childrens_keys():
    c = card(parent_dataset_options={"n_train": 400, "noise": 0.5})
    assert c.dataset_options == {"n_train": 100}
    assert c.parent_data_options() == {"n_train": 400, "noise": 0.5}
    assert card().parent_data_options() == {"n_train": 100}
    with pytest.raises(ConfigError, match="expected a table"):
        card(parent_dataset_options=[1, 2])
    assert "parent_dataset_options" in c.to_dict()
    assert PairCard.from_dict(c.to_dict()) == c


def test_parent_dataset_options_are_part_of_the_parent_key():
    plain, bigger = card(), card(parent_dataset_options={"n_train": 400})
    train = parent_train_config(plain)
    assert parent_key(plain, train) != parent_key(bigger, train)
    # an empty table is the children's data: the key is the one cards without the field had
    assert parent_key(card(parent_dataset_options={}), train) == parent_key(plain, train)
    assert parent_key(card(parent_dataset_options={"n_train": 100}), train) == parent_key(plain, train)


def test_the_parent_trains_on_its_data_and_the_children_on_theirs(tmp_path):
    c = card(parent_dataset_options={"n_train": 300})
    manager = hkt_core.get_plugin_manager()
    splits = load_splits(c, c.train, manager, parent=True)
    assert len(splits.train) + len(splits.val) == 300
    assert len(load_splits(c, c.train, manager).train) + len(load_splits(c, c.train, manager).val) == 100

    hkt_core.reset_default_manager()
    manager = hkt_core.get_plugin_manager()
    manager.register(cards_plugin(c), name="parent-data-test")
    SEEN.clear()
    hkt_core.train(c.name, "parent", manager=manager, out=tmp_path / "p", epochs=1)
    assert SEEN[-1]["n_train"] == 300
    SEEN.clear()
    run = hkt_core.train(c.name, "kd", manager=manager, out=tmp_path / "k", epochs=1,
                         parent_weights=tmp_path / "p" / "child.safetensors")
    assert [s["n_train"] for s in SEEN] == [100]
    assert run.summary["parent"]["sha256"] == sha256_file(tmp_path / "p" / "child.safetensors")


TRAIN_PARENT = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
import hkt_core
from hkt_core.pairs import PairCard
from test_train_support import card_dict
data = card_dict("determinism-pair", batchnorm=True, augment=True)
data["parent_train"] = {"epochs": 2, "lr": 0.05, "batch_size": 16}
run = hkt_core.train(PairCard.from_dict(data), "parent", out=sys.argv[1], progress=False)
print(run.summary["parent"])
"""


def test_training_the_same_parent_twice_gives_the_same_weights(tmp_path):
    """Two processes, the same card, seed and number of intra-op threads: bit-identical parent
    weights, so the same weights digest (the files differ: their metadata holds the run id)."""
    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    files = []
    for i in range(2):
        out = tmp_path / f"parent{i}"
        subprocess.run([sys.executable, "-c", TRAIN_PARENT, str(out), "1"], check=True, env=env,
                       capture_output=True, text=True, timeout=300)
        assert json.loads((out / "summary.json").read_text())["method"] == "parent"
        files.append(out / "child.safetensors")
    a, b = (load_file(str(f)) for f in files)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert weights_sha256(files[0]) == weights_sha256(files[1])
    assert sha256_file(files[0]) != sha256_file(files[1]), "the files differ in their metadata only"


def test_the_weights_digest_sees_every_tensor_and_name(tmp_path):
    from safetensors.torch import save_file

    def digest(tensors, name, metadata=None):
        save_file(tensors, str(tmp_path / name), metadata=metadata)
        return weights_sha256(tmp_path / name)

    base = digest({"w": torch.zeros(3), "b": torch.ones(2)}, "a.safetensors", {"run": "1"})
    assert digest({"b": torch.ones(2), "w": torch.zeros(3)}, "b.safetensors", {"run": "2"}) == base
    assert digest({"w": torch.tensor([0.0, 0.0, 1e-30]), "b": torch.ones(2)}, "c.safetensors") != base
    assert digest({"v": torch.zeros(3), "b": torch.ones(2)}, "d.safetensors") != base
    assert digest({"w": torch.zeros(1, 3), "b": torch.ones(2)}, "e.safetensors") != base
    assert digest({"w": torch.zeros(3, dtype=torch.float64), "b": torch.ones(2)}, "f.safetensors") != base
