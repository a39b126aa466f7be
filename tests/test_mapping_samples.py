"""Data sets whose samples are mappings, as Hugging Face data sets yield them: read as
``(inputs, target)`` by one rule (``hkt_core.data.as_pairs``), trained from the command line, and
refused in one line when no key holds the target."""

from __future__ import annotations

import json
import uuid

import pytest
import torch
from torch.utils.data import Dataset

from hkt_core.cli.main import main
from hkt_core.data import INPUT_ORDER, DatasetBundle, SampleFormError, as_pairs


class Rows(Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def _bundle(rows, info=None):
    return DatasetBundle(Rows(rows), Rows(rows[:2]), ((3,),), dict(info or {}))


def test_inputs_follow_the_zoo_order_then_the_samples_own():
    row = {"extra": torch.zeros(3), "token_type_ids": torch.full((3,), 2), "label": 1,
           "attention_mask": torch.ones(3, dtype=torch.long), "input_ids": torch.tensor([5, 6, 7])}
    bundle = as_pairs(_bundle([row, row]))
    assert bundle.info["input_keys"] == ["input_ids", "attention_mask", "token_type_ids", "extra"]
    assert bundle.info["target_key"] == "label"
    inputs, target = bundle.train[0]
    assert [t.tolist() for t in inputs] == [[5, 6, 7], [1, 1, 1], [2, 2, 2], [0.0, 0.0, 0.0]]
    assert target.dtype == torch.long and int(target) == 1
    inputs, _ = bundle.test[1]
    assert len(inputs) == 4
    assert INPUT_ORDER.index("input_ids") < INPUT_ORDER.index("attention_mask") < INPUT_ORDER.index("token_type_ids")


def test_one_input_is_a_tensor_and_the_bundle_can_name_its_keys():
    row = {"x": torch.ones(3), "y": 0, "kind": 4}
    one = as_pairs(_bundle([row], {"input_keys": ["x"], "target_key": "kind"}))
    x, target = one.train[0]
    assert isinstance(x, torch.Tensor) and x.tolist() == [1.0, 1.0, 1.0] and int(target) == 4
    pairs = _bundle([(torch.ones(3), 0)])
    assert as_pairs(pairs) is pairs   # samples that already are (inputs, target) are left as they are


@pytest.mark.parametrize("rows, info, words", [
    ([{"input_ids": torch.ones(3), "class_id": 1}], {}, "none of which holds the target: name it one of"),
    ([{"x": torch.ones(3), "label": 1}], {"input_keys": ["pixels"]}, "info['input_keys'] names 'pixels'"),
    ([{"label": 1}], {}, "hold only the target 'label'"),
])
def test_a_mapping_that_does_not_say_what_is_what_is_refused_in_one_line(rows, info, words):
    with pytest.raises(SampleFormError, match="data set 'rows'") as found:
        as_pairs(_bundle(rows, info), "rows")
    assert words in str(found.value) and "\n" not in str(found.value)


def test_a_later_sample_without_a_key_names_the_sample_and_the_keys():
    rows = [{"x": torch.ones(3), "label": 1}, {"x": torch.ones(3)}]
    bundle = as_pairs(_bundle(rows), "rows")
    with pytest.raises(SampleFormError, match="sample 1 has no 'label'"):
        bundle.train[1]


#: a token data set of mapping samples with its keys in no particular order, and two token models
#: with odd parameter names that read (ids, mask, types) positionally
MODULE = '''
import torch
from torch import nn
from torch.utils.data import Dataset

from hkt_core.data import DatasetBundle

VOCAB, LENGTH, CLASSES = 9, 6, 3


class Samples(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)
        self.mask = torch.ones(n, LENGTH, dtype=torch.long)
        self.mask[::2, 4:] = 0

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"token_type_ids": torch.zeros(LENGTH, dtype=torch.long), "label": int(self.ids[i, 0]) % CLASSES,
                "attention_mask": self.mask[i], "input_ids": self.ids[i]}


def records(n_train: int = 240, n_test: int = 60):
    """Token sequences as mappings; the class is the first token's id modulo 3."""
    return DatasetBundle(Samples(n_train, 1), Samples(n_test, 2), ((LENGTH,), (LENGTH,), (LENGTH,)),
                         {"num_classes": CLASSES})


class FirstToken(nn.Module):
    def __init__(self, width_of_things: int = 16):
        super().__init__()
        self.table_of_words = nn.Embedding(VOCAB, width_of_things)
        self.kinds = nn.Embedding(2, width_of_things)
        self.mixer_one = nn.Sequential(nn.Linear(width_of_things, width_of_things), nn.GELU())
        self.mixer_two = nn.Sequential(nn.Linear(width_of_things, width_of_things), nn.GELU())
        self.out_layer = nn.Linear(width_of_things, CLASSES)

    def forward(self, word_ids, keep, kind_ids):
        # two kinds of token only: ids given in another place than the last would index past the table
        h = (self.table_of_words(word_ids) + self.kinds(kind_ids)) * keep.unsqueeze(-1)
        h = self.mixer_two(self.mixer_one(h))
        return self.out_layer(h[:, 0])
'''

CARD = '''
name = "{name}"
task = "classification"
parent = "{module}:FirstToken"
child = "{module}:FirstToken"
dataset = "{module}:records"
input_shapes = [[1, 6], [1, 6], [1, 6]]
input_dtypes = ["int64", "int64", "int64"]
stages = 2

[parent_options]
width_of_things = 24

[child_options]
width_of_things = 8

[train]
epochs = 1
batch_size = 24
lr = 0.01
optimizer = "adamw"
val_fraction = 0.2

[parent_train]
epochs = 6
'''


def test_a_pair_on_mapping_samples_checks_and_trains_from_the_cli(tmp_path, isolated_home, monkeypatch, capsys):
    module = f"user_records_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    card = tmp_path / "records.toml"
    card.write_text(CARD.format(name="records-pair", module=module), encoding="utf-8")
    assert main(["pairs", "check", str(card), "--methods", "hkt"]) == 0, capsys.readouterr().err
    assert "pair records-pair: ok" in capsys.readouterr().out
    assert main(["pairs", "add", str(card)]) == 0
    run = tmp_path / "run"
    assert main(["train", "records-pair", "--method", "hkt", "--no-progress", "--out", str(run)]) == 0, \
        capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["epochs"] == 1 and 0.0 <= summary["test"]["accuracy"] <= 1.0
    assert json.loads((run / "alignment.json").read_text(encoding="utf-8"))["pairs"]


def test_mapping_samples_without_a_target_stop_the_check_in_one_line(tmp_path, isolated_home, monkeypatch, capsys):
    module = f"user_records_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(MODULE.replace('"label":', '"class_of_row":'), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    card = tmp_path / "records.toml"
    card.write_text(CARD.format(name="records-bad", module=module), encoding="utf-8")
    assert main(["pairs", "add", str(card)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "none of which holds the target" in lines[0] and "'class_of_row'" in lines[0]
    assert "info['target_key']" in lines[0]
    assert not (isolated_home / "pairs" / "records-bad.toml").exists()
