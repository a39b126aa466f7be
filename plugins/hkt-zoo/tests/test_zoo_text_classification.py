"""A zoo user's workflow from the command line, with no Python of their own: a fine-tuned 4-layer BERT
saved with ``save_pretrained`` (its tokenizer beside it) and labelled sentences in a CSV, through
``hkt pairs new --parent-option pretrained=...``, ``pairs check`` from another folder, ``pairs add``,
``train --method kd`` and ``--method hkt``, ``export --format hf``, then ``from_pretrained``; the
held-back run of the same scenario on JSON-lines files with a DistilBERT parent; the data set's
rows, labels and refusals; relative card paths."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from hkt_core.cli.main import main  # noqa: E402
from hkt_core.errors import ConfigError  # noqa: E402
from hkt_core.pairs.card import PairCard  # noqa: E402
from hkt_core.plugins import default_manager, reset_default_manager  # noqa: E402

from hkt_zoo.text_classification import text_classification_files  # noqa: E402

POSITIVE = ("good", "great", "fine", "nice")
NEGATIVE = ("bad", "awful", "poor", "sad")
WORDS = (*POSITIVE, *NEGATIVE, "the", "movie", "was", "very", "plot", "acting", "a")
VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS)


def _tokenizer(folder: Path):
    import inspect

    from transformers import BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:
        return BertTokenizerFast(vocab=str(vocab))
    return BertTokenizerFast(vocab_file=str(vocab))


def _sentences(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        rows.append((" ".join(["the", rng.choice(("movie", "plot", "acting")), "was", "very", word]
                              + ["a"] * rng.randint(0, 4)), "pos" if positive else "neg"))
    return rows


def _fine_tuned(folder: Path, model, tokenizer, rows: list[tuple[str, str]]) -> None:
    """``model`` trained on ``rows`` (labels sorted: neg 0, pos 1), saved with its tokenizer."""
    torch.manual_seed(0)
    encoded = tokenizer([r[0] for r in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([int(r[1] == "pos") for r in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(150):
        pick = torch.randint(0, len(rows), (32,))
        loss = model(input_ids=encoded["input_ids"][pick], attention_mask=encoded["attention_mask"][pick],
                     labels=labels[pick]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits
                    .argmax(-1) == labels).float().mean().item()
    assert accuracy > 0.9   # a fine-tuned parent, as the scenario's user has
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _bert_parent(folder: Path, rows) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = _tokenizer(folder.parent)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=2, id2label={0: "neg", 1: "pos"},
                        label2id={"neg": 0, "pos": 1})
    _fine_tuned(folder, BertForSequenceClassification(config), tokenizer, rows)


def _distilbert_parent(folder: Path, rows) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = _tokenizer(folder.parent)
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(VOCAB), dim=32, n_layers=4, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
                              seq_classif_dropout=0.0, num_labels=2)
    _fine_tuned(folder, DistilBertForSequenceClassification(config), tokenizer, rows)


def _short(card: Path, epochs: int = 1) -> None:
    text = card.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^epochs = \d+$", f"epochs = {epochs}", text)
    card.write_text(re.sub(r"(?m)^batch_size = \d+$", "batch_size = 32", text), encoding="utf-8")


def _scenario(tmp_path, monkeypatch, *, name: str, data_options: list[str], auto_class: str) -> None:
    work = tmp_path / "work"
    monkeypatch.chdir(work)
    assert main(["pairs", "new", name, "--parent", "transformers", "--parent-option", "pretrained=parent",
                 "--child", "transformers", "--dataset", "text-classification-files",
                 *[a for option in data_options for a in ("--dataset-option", option)]]) == 0
    card = work / f"{name}.toml"
    text = card.read_text(encoding="utf-8")
    assert 'pretrained = "parent"' in text and 'init_from_parent = "parent"' in text   # relative to the card
    assert 'tokenizer = "parent"' in text
    _short(card)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)   # the card's relative paths resolve against its folder, not this one
    assert main(["pairs", "check", str(card), "--methods", "kd,hkt"]) == 0
    assert main(["pairs", "add", str(card)]) == 0
    reset_default_manager()
    runs = tmp_path / "runs"
    for method in ("kd", "hkt"):
        assert main(["train", name, "--method", method, "--no-progress", "--out", str(runs / method)]) == 0
    for method in ("kd", "hkt"):
        assert main(["export", str(runs / method), "--format", "hf"]) == 0
        exported = runs / method / "export" / "child-hf"
        record = json.loads((exported / "hkt_export.json").read_text())
        assert record["auto_class"] == auto_class and record["max_difference"] == 0
        from hkt_core import load_run

        child = load_run(runs / method).child().eval()
        loaded = getattr(transformers, auto_class).from_pretrained(exported).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
        batch = tokenizer(["the movie was very good", "the plot was very awful a a"], padding=True,
                          return_tensors="pt")
        with torch.no_grad():
            expected = child(batch["input_ids"], batch["attention_mask"]).logits
            got = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        assert torch.equal(got, expected)


def test_the_scenario_a_bert_and_a_csv_from_the_command_line(hkt_home, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    rows = _sentences(240, seed=0)
    with (work / "reviews.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "sentiment"])
        writer.writerows(rows)
    _bert_parent(work / "parent", rows)
    _scenario(tmp_path, monkeypatch, name="distil-bert-csv", auto_class="AutoModelForSequenceClassification",
              data_options=["train=reviews.csv", "text_column=sentence", "label_column=sentiment"])


def test_held_back_json_lines_and_a_distilbert_parent(hkt_home, tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    rows = _sentences(200, seed=1)
    for split, part in (("train", rows[:160]), ("test", rows[160:])):
        (work / "data" / f"{split}.jsonl").write_text(
            "".join(json.dumps({"review": text, "y": int(label == "pos")}) + "\n" for text, label in part))
    _distilbert_parent(work / "parent", rows[:160])
    _scenario(tmp_path, monkeypatch, name="distil-distilbert-jsonl", auto_class="AutoModelForSequenceClassification",
              data_options=["train=data/train.jsonl", "test=data/test.jsonl", "text_column=review", "label_column=y"])


# -- the data set on its own -------------------------------------------------------------------------

@pytest.fixture()
def tokenizer_folder(tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    _tokenizer(tmp_path).save_pretrained(folder)
    return folder


def test_labels_are_sorted_names_and_batches_are_cut_to_their_longest(tmp_path, tokenizer_folder):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nthe movie was good,pos\nthe plot was bad a a a a,neg\nvery nice,zz\n"
                    "the acting was poor,neg\ngood,pos\n", encoding="utf-8")
    bundle = text_classification_files(train=str(data), test=str(data), tokenizer=str(tokenizer_folder))
    assert bundle.info["class_names"] == ["neg", "pos", "zz"] and bundle.info["num_classes"] == 3
    assert [int(bundle.train[i][1]) for i in range(5)] == [1, 0, 2, 0, 1]
    (ids, mask), label = bundle.train[0]
    assert ids.shape == mask.shape == (bundle.info["length"],) == bundle.input_shapes[0]
    batch = (torch.stack([bundle.train[i][0][0] for i in (0, 4)]), torch.stack([bundle.train[i][0][1] for i in (0, 4)]))
    (cut_ids, cut_mask), _ = bundle.augment(batch, torch.tensor([1, 1]))
    assert cut_ids.shape[1] == 6 < bundle.info["length"]   # [CLS] the movie was good [SEP]


def test_a_bad_row_is_named_in_one_line(tmp_path, tokenizer_folder):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nthe movie was good,pos\n,neg\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"d\.csv:3: the text is empty"):
        text_classification_files(train=str(data), test=str(data), tokenizer=str(tokenizer_folder))
    lines = tmp_path / "d.jsonl"
    lines.write_text('{"text": "good", "label": 1}\n{"text": "bad"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"d\.jsonl:2: not a JSON object"):
        text_classification_files(train=str(lines), test=str(lines), tokenizer=str(tokenizer_folder))
    with pytest.raises(ConfigError, match=r"d\.csv:1: no column 'sentence'"):
        text_classification_files(train=str(data), text_column="sentence", tokenizer=str(tokenizer_folder))
    long = tmp_path / "long.csv"
    long.write_text("text,label\ngood,1\n" + "the movie " * 20 + ",0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"long\.csv:3: 42 tokens, more than max_length = 16"):
        text_classification_files(train=str(long), test=str(long), tokenizer=str(tokenizer_folder), max_length=16,
                                  truncation=False)
    with pytest.raises(ConfigError, match="unknown option"):
        text_classification_files(train=str(data), tokenizer=str(tokenizer_folder), revision="main")
    with pytest.raises(ConfigError, match="URL"):
        text_classification_files(train="https://example.com/d.csv", tokenizer=str(tokenizer_folder))


def test_parquet_and_saved_folders_say_what_they_need(tmp_path, tokenizer_folder):
    import importlib.util

    table = tmp_path / "d.parquet"
    table.write_bytes(b"PAR1")
    if importlib.util.find_spec("pyarrow") is None and importlib.util.find_spec("pandas") is None:
        with pytest.raises(ConfigError, match="needs pyarrow or pandas"):
            text_classification_files(train=str(table), tokenizer=str(tokenizer_folder))
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(ConfigError, match="needs the datasets package"):
            text_classification_files(train=str(saved), tokenizer=str(tokenizer_folder))


def test_relative_card_paths_resolve_against_the_card_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cards"
    folder.mkdir()
    card = folder / "p.toml"
    card.write_text('name = "p"\ntask = "classification"\nparent = "transformers"\nchild = "transformers"\n'
                    'dataset = "text-classification-files"\ninput_shapes = [[1, 8], [1, 8]]\n'
                    '[parent_options]\narchitecture = "BertForSequenceClassification"\npretrained = "../models/bert"\n'
                    '[child_options]\nweights = "w.safetensors"\n[dataset_options]\ntrain = "data/a.csv"\n'
                    'text_column = "sentence"\ntokenizer = "/abs/tok"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    loaded = PairCard.from_toml(card, manager=default_manager())
    assert loaded.parent_options["pretrained"] == str(tmp_path / "models" / "bert")
    assert loaded.parent_options["architecture"] == "BertForSequenceClassification"
    assert loaded.child_options["weights"] == str(folder / "w.safetensors")
    assert loaded.dataset_options == {"train": str(folder / "data" / "a.csv"), "text_column": "sentence",
                                      "tokenizer": "/abs/tok"}
