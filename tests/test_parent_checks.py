"""A parent is judged before any child trains: non-finite validation loss (diverged) or accuracy
no better than always predicting the most frequent class (untrained) is refused in one line."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from hkt_core.errors import ConfigError, TrainingDiverged
from hkt_core.pairs import PairCard
from hkt_core.plugins import default_manager
from hkt_core.train.parents import chance_accuracy, check_parent

CARD = PairCard.from_dict({"name": "p", "task": "classification", "parent": "digits_cnn_large",
                           "child": "digits_cnn_tiny", "input_shapes": [[1, 1, 8, 8]], "dataset": "digits"})


def _split(labels):
    return TensorDataset(torch.zeros(len(labels), 2), torch.tensor(labels))


def test_chance_is_the_share_of_the_most_frequent_class():
    labels = [2, 0, 2, 1, 2, 0, 2]
    assert chance_accuracy(_split(labels)) == pytest.approx(max(labels.count(c) for c in set(labels)) / len(labels))
    assert chance_accuracy(TensorDataset(torch.zeros(3, 2), torch.zeros(3, 4))) is None   # not class labels


@pytest.mark.parametrize("loss", [math.nan, math.inf, None])
def test_a_diverged_parent_is_refused_naming_what_to_change(loss):
    task = default_manager().lookup("losses", "classification")
    with pytest.raises(TrainingDiverged) as info:
        check_parent(CARD, {"loss": loss, "accuracy": 0.9}, task, _split([0, 1]), how="trained 3 epoch(s)", epochs=3)
    text = str(info.value)
    assert "has diverged: validation loss" in text and "[parent_train] lr" in text and "\n" not in text


def test_no_better_than_chance_is_refused_and_better_passes():
    task = default_manager().lookup("losses", "classification")
    split = _split([0, 0, 0, 1])
    with pytest.raises(ConfigError) as info:
        check_parent(CARD, {"loss": 0.7, "accuracy": 0.75}, task, split, how="trained 1 epoch(s)", epochs=1)
    assert "validation accuracy 0.7500 <= 0.7500" in str(info.value) and "--parent-epochs N" in str(info.value)
    check_parent(CARD, {"loss": 0.7, "accuracy": 1.0}, task, split, how="trained 1 epoch(s)", epochs=1)
    with pytest.raises(ConfigError, match="give the parent weights trained on this task"):
        check_parent(CARD, {"loss": 0.7, "accuracy": 0.5}, task, split, how="pretrained weights w", epochs=None)
