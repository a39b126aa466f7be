"""A transformers pair from the command line with no wrapper module: ``hkt pairs new``, ``pairs
check``, ``pairs add`` and ``train --method hkt`` on the token-recall data set; the parent is
checked before any child trains, and a parent with its own weights is used as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from hkt_core.cli.main import main

PAIR = "recall-tiny"
#: two layers of width 32 over one of width 16 (BERT's pooler reads the first token: the query)
PARENT = {"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64}
CHILD = {"hidden_size": 16, "num_hidden_layers": 1, "intermediate_size": 32}
#: 1 or 2 key-value pairs: sequences of 4 or 6 tokens, padded to 6
DATA = {"n_train": 320, "n_test": 48, "num_keys": 4, "min_pairs": 1, "max_pairs": 2}
VOCAB = 1 + 4 + 4


def _config(fields: dict) -> str:
    base = {"vocab_size": VOCAB, "num_attention_heads": 2, "max_position_embeddings": 16, "num_labels": 4, **fields}
    return "{ " + ", ".join(f"{k} = {v}" for k, v in base.items()) + " }"


def _fill(card: Path, parent_extra: str = "", lr: str = "0.003") -> None:
    """What a user writes into the card `hkt pairs new` wrote: the models' options, a small data
    set and a short recipe."""
    text = card.read_text(encoding="utf-8")
    text = text.replace("[parent_options]\n", f'[parent_options]\narchitecture = "BertForSequenceClassification"\n'
                                              f"config = {_config(PARENT)}\n{parent_extra}")
    text = text.replace("[child_options]\n", f'[child_options]\narchitecture = "BertForSequenceClassification"\n'
                                             f"config = {_config(CHILD)}\n")
    text = text.replace("[dataset_options]\n", "[dataset_options]\n" + "".join(f"{k} = {v}\n" for k, v in DATA.items()))
    # the data set's default sequences are 14 tokens (6 pairs); these options make them 6
    text = text.replace("input_shapes = [[1, 14], [1, 14]]", "input_shapes = [[1, 6], [1, 6]]")
    text = re.sub(r"(?m)^epochs = \d+$", "epochs = 1", text)
    text = re.sub(r"(?m)^batch_size = \d+$", "batch_size = 4", text)
    text = text.replace('optimizer = "sgd"', 'optimizer = "adamw"')
    text = re.sub(r"(?m)^lr = [0-9.e-]+$", f"lr = {lr}", text)
    text = text.replace("[parent_train]\n", "[parent_train]\nbatch_size = 16\n")
    card.write_text(text, encoding="utf-8")


def _new_card(tmp_path: Path, name: str = PAIR, **fill) -> Path:
    card = tmp_path / f"{name}.toml"
    assert main(["pairs", "new", name, "--parent", "transformers", "--child", "transformers",
                 "--dataset", "token-recall", "-o", str(card)]) == 0
    text = card.read_text(encoding="utf-8")
    assert 'input_dtypes = ["int64", "int64"]' in text and "input_shapes = [[1, 14], [1, 14]]" in text
    _fill(card, **fill)
    return card


def _quiet(capsys) -> str:
    return capsys.readouterr().err


def test_transformers_pair_trains_from_the_cli_on_other_sequence_lengths(hkt_home, tmp_path, capsys, monkeypatch):
    from hkt_core.family import Family

    card = _new_card(tmp_path)
    assert main(["pairs", "check", str(card), "--methods", "hkt"]) == 0
    out = capsys.readouterr().out
    assert f"pair {PAIR}: ok" in out and "hkt (loss" in out
    assert main(["pairs", "add", str(card)]) == 0
    seen: list[int] = []
    forward = Family.forward

    def spy(self, *inputs):
        seen.append(int(inputs[0].shape[1]))
        return forward(self, *inputs)

    monkeypatch.setattr(Family, "forward", spy)
    run = tmp_path / "run"
    assert main(["train", PAIR, "--method", "hkt", "--stages", "3", "--parent-epochs", "4", "--no-progress",
                 "--out", str(run)]) == 0, _quiet(capsys)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["epochs"] == 1 and summary["parent"]["source"] == "cache"
    parent = json.loads((Path(summary["parent"]["path"]) / "summary.json").read_text(encoding="utf-8"))
    assert parent["epochs"] == 4   # --parent-epochs: the parent's; --epochs stays the children's
    alignment = json.loads((run / "alignment.json").read_text(encoding="utf-8"))
    assert len(alignment["pairs"]) == 3
    # training batches are cut to their longest sequence: lengths other than the example's 6
    assert 6 in seen and min(seen) < 6, seen


def test_an_untrained_parent_is_refused_before_any_child_trains(hkt_home, tmp_path, capsys):
    card = _new_card(tmp_path, lr="1e-7")
    assert main(["pairs", "add", str(card)]) == 0
    run = tmp_path / "run"
    assert main(["train", PAIR, "--method", "kd", "--parent-epochs", "1", "--no-progress", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is no better than chance: validation accuracy" in err and "--parent-epochs N" in err
    assert "no child was trained" in err
    assert not (run / "summary.json").exists() and not (run / "child.safetensors").exists()
    assert main(["train", PAIR, "--method", "kd", "--parent-epochs", "0", "--out", str(run)]) == 2
    assert "--parent-epochs 0 is invalid: an integer >= 1" in capsys.readouterr().err


def _trained_parent_weights(folder: Path) -> Path:
    """A parent trained here in plain PyTorch, saved as safetensors (a user's pretrained model)."""
    from safetensors.torch import save_file

    from hkt_core.models import build_model
    from hkt_core.plugins import default_manager
    from hkt_zoo.data import token_recall

    torch.manual_seed(0)
    config = {"vocab_size": VOCAB, "num_attention_heads": 2, "max_position_embeddings": 16, "num_labels": 4, **PARENT}
    model = build_model("transformers", default_manager(), architecture="BertForSequenceClassification", config=config)
    ids, mask, labels = token_recall(**DATA).train.data.tensors
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(6):
        order = torch.randperm(len(labels))
        for i in range(0, len(labels), 16):
            j = order[i:i + 16]
            loss = torch.nn.functional.cross_entropy(model(ids[j], attention_mask=mask[j]).logits, labels[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    file = folder / "parent.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    return file


def test_a_pretrained_parent_is_used_as_it_is_and_evaluated_once(hkt_home, tmp_path, capsys):
    from safetensors.torch import load_file

    from hkt_core.config import TrainConfig
    from hkt_core.models import build_model
    from hkt_core.plugins import default_manager
    from hkt_core.train.data import load_splits

    weights = _trained_parent_weights(tmp_path)
    card = _new_card(tmp_path, parent_extra=f'weights = "{weights}"\n')
    assert main(["pairs", "add", str(card)]) == 0
    run = tmp_path / "run"
    assert main(["train", PAIR, "--method", "kd", "--no-progress", "--out", str(run)]) == 0, _quiet(capsys)
    assert not (hkt_home / "parents").exists()   # nothing trained, nothing cached
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    parent = summary["parent"]
    assert parent["source"] == "pretrained" and parent["path"] == str(weights.resolve())
    # the recorded evaluation is the weights' accuracy on the pair's validation split (counted here)
    manager = default_manager()
    stored = manager.lookup("pairs", PAIR)
    model = build_model("transformers", manager, **stored.parent_options).eval()
    for name, tensor in load_file(str(weights)).items():
        assert torch.equal(model.state_dict()[name], tensor), name
    val = load_splits(stored, TrainConfig(**{"val_fraction": stored.train.val_fraction}), manager).val
    hits = 0
    with torch.no_grad():
        for i in range(len(val)):
            (ids, mask), label = val[i]
            hits += int(model(ids[None], attention_mask=mask[None]).logits.argmax(1).item() == int(label))
    assert parent["val"]["accuracy"] == pytest.approx(hits / len(val), abs=1e-12)
    # weights that were never trained (all zero: every sample gets class 0) are refused, naming them
    from safetensors.torch import save_file

    zeros = tmp_path / "zeros.safetensors"
    save_file({k: torch.zeros_like(v).contiguous() for k, v in model.state_dict().items()}, str(zeros))
    other = _new_card(tmp_path, "recall-zeros", parent_extra=f'weights = "{zeros}"\n')
    assert main(["pairs", "add", str(other)]) == 0
    capsys.readouterr()
    assert main(["train", "recall-zeros", "--method", "kd", "--no-progress", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"pretrained weights {zeros.resolve()}) is no better than chance" in err
    assert "give the parent weights trained on this task" in err and not (tmp_path / "r2" / "summary.json").exists()
