"""The token-recall data set: labels recomputed here by reading each sequence, padding masks,
lengths, determinism, dynamic padding and one-line errors."""

from __future__ import annotations

import pytest
import torch

from hkt_core.errors import ConfigError
from hkt_zoo.data import PAD, token_recall, trim_padding


def _reference_label(ids: list[int], num_classes: int) -> tuple[int, int]:
    """(label, true length) of one sequence, read as a person would: the query is the first token;
    the answer is the value after the key equal to it."""
    length = next((i for i, t in enumerate(ids) if t == PAD), len(ids))
    query, body = ids[0], ids[1:length - 1]
    assert ids[length - 1] == query and all(t == PAD for t in ids[length:])
    keys, values = body[0::2], body[1::2]
    assert len(set(keys)) == len(keys) and all(k > num_classes for k in keys)
    assert all(1 <= v <= num_classes for v in values)
    return values[keys.index(query)] - 1, length


def test_labels_masks_and_lengths_match_a_reading_of_each_sequence():
    bundle = token_recall(n_train=300, n_test=50, num_classes=3, num_keys=6, min_pairs=1, max_pairs=4, seed=3)
    assert bundle.input_shapes == ((10,), (10,)) and bundle.info["num_classes"] == 3
    assert bundle.info["vocab_size"] == 10
    lengths, labels = set(), []
    for split in (bundle.train, bundle.test):
        for i in range(len(split)):
            (ids, mask), label = split[i]
            assert ids.dtype == torch.int64 and mask.dtype == torch.int64 and ids.shape == (10,)
            expected, length = _reference_label(ids.tolist(), 3)
            assert int(label) == expected and mask.tolist() == [1] * length + [0] * (10 - length)
            lengths.add(length)
            labels.append(expected)
    assert lengths == {4, 6, 8, 10} and set(labels) == {0, 1, 2}
    again = token_recall(n_train=300, n_test=50, num_classes=3, num_keys=6, min_pairs=1, max_pairs=4, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(bundle.train.data.tensors, again.train.data.tensors))
    other = token_recall(n_train=300, n_test=50, num_classes=3, num_keys=6, min_pairs=1, max_pairs=4, seed=4)
    assert not torch.equal(bundle.train.data.tensors[0], other.train.data.tensors[0])


def test_dynamic_padding_cuts_a_batch_to_its_longest_sequence():
    bundle = token_recall(n_train=40, n_test=10, min_pairs=1, max_pairs=3)
    ids, mask, target = bundle.train.data.tensors
    short = mask.sum(1) == 4
    (cut_ids, cut_mask), same = bundle.augment((ids[short], mask[short]), target[short], None)
    assert cut_ids.shape[1] == 4 and torch.equal(cut_ids, ids[short][:, :4])
    assert bool(cut_mask.all()) and torch.equal(same, target[short])
    (full_ids, _), _ = trim_padding((ids, mask), target)
    assert full_ids.shape[1] == 8
    assert token_recall(n_train=4, n_test=2, dynamic_padding=False).augment is None


@pytest.mark.parametrize("options, message", [
    ({"max_pairs": 9, "num_keys": 8}, "max_pairs = 9 exceeds num_keys = 8"),
    ({"min_pairs": 3, "max_pairs": 2}, "min_pairs = 3 exceeds max_pairs = 2"),
    ({"num_classes": 1}, "num_classes = 1 is invalid: an integer >= 2"),
    ({"n_train": 0}, "n_train = 0 is invalid"),
    ({"dynamic_padding": "yes"}, "dynamic_padding = 'yes' is invalid"),
])
def test_bad_options_fail_in_one_line(options, message):
    with pytest.raises(ConfigError, match="data set 'token-recall'") as info:
        token_recall(**options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_registered_data_set_honours_its_contract(hkt_manager, hkt_contracts):
    assert "token-recall" in hkt_contracts.check_all("datasets", hkt_manager, plugin="zoo")
