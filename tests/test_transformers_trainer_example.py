"""examples/transformers-trainer: a plain Trainer trains the parent, HKTTrainer trains the child with
kd, hkt and fitnet; each saved child loads with from_pretrained and equals the trained child.

Runs where transformers, accelerate and hkt-zoo are installed (the zoo's test extra); skips otherwise.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("hkt_zoo")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transformers-trainer" / "hkt_trainer.py"


def _example():
    spec = importlib.util.spec_from_file_location("hkt_trainer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_the_example_distils_with_each_method_and_saves_a_from_pretrained_child(tmp_path):
    from transformers import BertForSequenceClassification

    ex = _example()
    train, test = ex.toy_data(256, seed=0), ex.toy_data(64, seed=1)
    parent = ex.train_parent(tmp_path, 40, train, test)
    parent_state = {k: v.clone() for k, v in parent.state_dict().items()}
    for method in ("kd", "hkt", "fitnet"):
        trainer = ex.distil(method, parent, tmp_path, 16, train, test)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        assert losses and all(torch.isfinite(torch.tensor(losses))), method
        assert sum(losses[-2:]) < sum(losses[:2]), (method, losses)   # it learns
        assert all(torch.equal(parent_state[k], v) for k, v in parent.state_dict().items()), method
        loaded = BertForSequenceClassification.from_pretrained(str(tmp_path / method / "child"),
                                                               local_files_only=True)
        child = trainer.model.state_dict()
        assert loaded.state_dict().keys() == child.keys()
        assert all(torch.equal(v, child[k]) for k, v in loaded.state_dict().items()), method
        assert 0.0 <= ex.accuracy(loaded, test) <= 1.0
    assert ex.main(["--method", "kd", "--parent-steps", "2", "--steps", "2", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "kd" / "child" / "model.safetensors").is_file()
