"""Language models from the zoo on the command line, and ``hkt export --format hf``: causal LMs built
from a configuration or a local pretrained folder; a 2-layer GPT-2 parent and a 1-layer narrower
GPT-2 child on a local text file with the byte-level tokenizer through ``hkt pairs new``, ``pairs
check``, ``train --method kd`` and ``export --format hf``, then ``from_pretrained`` and ``generate``;
a tiny BERT classifier exported the same way; what the hf format refuses."""

from __future__ import annotations

import json
import re
import sysconfig
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from hkt_core.cli.main import main  # noqa: E402
from hkt_core.models import build_model  # noqa: E402
from hkt_core.plugins import default_manager  # noqa: E402

#: small standard-library modules as a local text file (the byte-level tokenizer: 258 ids)
SOURCES = ("colorsys.py", "keyword.py", "bisect.py")
BLOCK = 32


def _gpt2(layers: int, width: int, vocab: int = 258) -> str:
    return (f"{{ vocab_size = {vocab}, n_embd = {width}, n_layer = {layers}, n_head = 2, n_positions = {BLOCK}, "
            f"bos_token_id = 256, eos_token_id = 256 }}")


def _corpus(folder: Path) -> Path:
    root = Path(sysconfig.get_paths()["stdlib"])
    path = folder / "corpus.txt"
    path.write_text("\n\n".join((root / name).read_text(encoding="utf-8") for name in SOURCES), encoding="utf-8")
    return path


def _recipe(text: str, *, epochs: int = 1, batch: int = 16, lr: str = "0.003") -> str:
    text = re.sub(r"(?m)^epochs = \d+$", f"epochs = {epochs}", text)
    text = re.sub(r"(?m)^batch_size = \d+$", f"batch_size = {batch}", text)
    text = text.replace('optimizer = "sgd"', 'optimizer = "adamw"')
    return re.sub(r"(?m)^lr = [0-9.e-]+$", f"lr = {lr}", text)


@pytest.mark.parametrize("architecture, config", [
    ("GPT2LMHeadModel", {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 16}),
    ("LlamaForCausalLM", {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "num_key_value_heads": 1, "intermediate_size": 32}),
    ("Qwen2ForCausalLM", {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "num_key_value_heads": 1, "intermediate_size": 32}),
    ("MistralForCausalLM", {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                            "num_key_value_heads": 1, "intermediate_size": 32}),
])
def test_causal_lms_build_from_a_configuration_and_predict_token_logits(architecture, config, tmp_path):
    from hkt_core.adapters import adapter_for

    manager = default_manager()
    options = {"architecture": architecture,
               "config": {"vocab_size": 40, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, **config}}
    torch.manual_seed(0)
    model = build_model("transformers", manager, **options).eval()
    ids = torch.randint(3, 40, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        logits = adapter_for(model, manager).prediction(model(ids, mask))   # ids, then the mask, positionally
        named = model(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (2, 9, 40) and torch.equal(logits, named)
    # the same model from a local pretrained folder (safetensors only, nothing downloads)
    model.save_pretrained(str(tmp_path))
    again = build_model("transformers", manager, architecture=architecture, pretrained=str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.equal(again(ids, mask).logits, logits)


def _bert_card(folder: Path, name: str = "recall-hf") -> Path:
    config = ("{ vocab_size = 9, hidden_size = %d, num_hidden_layers = %d, num_attention_heads = 2, "
              "intermediate_size = 32, max_position_embeddings = 16, num_labels = 4 }")
    card = folder / f"{name}.toml"
    card.write_text(f'''name = "{name}"
task = "classification"
parent = "transformers"
child = "transformers"
dataset = "token-recall"
input_shapes = [[1, 6], [1, 6]]
input_dtypes = ["int64", "int64"]
stages = 2

[parent_options]
architecture = "BertForSequenceClassification"
config = {config % (32, 2)}

[child_options]
architecture = "BertForSequenceClassification"
config = {config % (16, 1)}

[dataset_options]
n_train = 96
n_test = 24
num_keys = 4
min_pairs = 1
max_pairs = 2

[train]
epochs = 1
batch_size = 16
optimizer = "adamw"
lr = 0.003
''', encoding="utf-8")
    return card


def test_a_bert_classifier_exports_as_a_folder_automodel_loads(hkt_home, tmp_path, capsys):
    card = _bert_card(tmp_path)
    assert main(["pairs", "add", str(card)]) == 0
    run = tmp_path / "run"
    assert main(["train", "recall-hf", "--method", "baseline", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--format", "hf"]) == 0
    out = capsys.readouterr().out
    folder = run / "export" / "child-hf"
    assert f"exported the child to {folder} (hf); output checked against the child: max difference 0" in out
    assert {"config.json", "model.safetensors", "hkt_export.json"} <= {p.name for p in folder.iterdir()}
    record = json.loads((folder / "hkt_export.json").read_text(encoding="utf-8"))
    assert record["architecture"] == "BertForSequenceClassification" and record["tokenizer"] is None
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True).eval()
    assert type(loaded) is transformers.BertForSequenceClassification
    from hkt_core import load_run
    from hkt_zoo.data import token_recall

    child = load_run(run).child()
    ids, mask, _ = token_recall(n_train=8, n_test=8, num_keys=4, min_pairs=1, max_pairs=2, seed=5).train.data.tensors
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids, attention_mask=mask).logits, child(ids, mask).logits)
    # an export again replaces the earlier one, and leaves no temporary behind
    assert main(["export", str(run), "--format", "hf"]) == 0
    assert sorted(p.name for p in (run / "export").iterdir()) == ["child-hf"]
    # what the format refuses, in one line each
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's own folder", encoding="utf-8")
    (tmp_path / "file.bin").write_bytes(b"x")
    for target, message in ((tmp_path / "mine", "is a folder that is not an hkt hf export (it has no hkt_export.json)"),
                            (tmp_path / "file.bin", "is a file; hf writes a folder"),
                            (run, "is the run folder or holds it")):
        capsys.readouterr()
        assert main(["export", str(run), "--format", "hf", "--out", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "a user's own folder"
    assert main(["export", str(run), "--format", "gguf"]) == 2
    assert "unknown export format 'gguf'; choose one of safetensors, onnx, pt2, hf" in capsys.readouterr().err


@pytest.mark.slow
def test_a_gpt2_pair_trains_with_kd_from_the_cli_exports_and_generates(hkt_home, tmp_path, capsys):
    corpus = _corpus(tmp_path)
    card = tmp_path / "lm-tiny.toml"
    assert main(["pairs", "new", "lm-tiny", "--parent", "transformers", "--child", "transformers",
                 "--dataset", "text-files", "--dataset-option", f"files={json.dumps(str(corpus))}",
                 "--dataset-option", 'separator="\\n\\n"', "--dataset-option", f"block_size={BLOCK}",
                 "-o", str(card)]) == 0
    text = card.read_text(encoding="utf-8")
    assert 'task = "causal-lm"' in text and f"input_shapes = [[1, {BLOCK}], [1, {BLOCK}]]" in text
    assert 'input_dtypes = ["int64", "int64"]' in text and 'separator = "\\n\\n"' in text
    text = text.replace("[parent_options]\n", f'[parent_options]\narchitecture = "GPT2LMHeadModel"\nconfig = {_gpt2(2, 32)}\n')
    text = text.replace("[child_options]\n", f'[child_options]\narchitecture = "GPT2LMHeadModel"\nconfig = {_gpt2(1, 16)}\n')
    card.write_text(_recipe(text), encoding="utf-8")
    assert main(["pairs", "check", str(card), "--methods", "kd,hkt"]) == 0
    out = capsys.readouterr().out
    assert "pair lm-tiny: ok" in out and f"outputs    [2, {BLOCK}, 258]" in out and "kd (loss" in out and "hkt (loss" in out
    assert main(["pairs", "add", str(card)]) == 0
    run = tmp_path / "run"
    assert main(["train", "lm-tiny", "--method", "kd", "--parent-epochs", "2", "--no-progress", "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["primary_metric"] == "perplexity" and summary["higher_is_better"] is False
    assert set(summary["test"]) >= {"loss", "perplexity", "token_accuracy"} and summary["test"]["perplexity"] < 258
    capsys.readouterr()
    assert main(["export", str(run), "--format", "hf"]) == 0
    assert "(hf); output checked against the child: max difference 0" in capsys.readouterr().out
    folder = run / "export" / "child-hf"
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert type(model) is transformers.GPT2LMHeadModel and model.config.n_layer == 1 and model.config.n_embd == 16
    assert model.config.use_cache is True   # off while training, on again for generation
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (256, 257)
    prompt = tokenizer("def ", return_tensors="pt")
    assert prompt["input_ids"].tolist() == [list(b"def ")]
    from hkt_core import load_run

    child = load_run(run).child()
    with torch.no_grad():
        assert torch.equal(model(**prompt).logits, child(prompt["input_ids"], prompt["attention_mask"]).logits)
        generated = model.generate(**prompt, max_new_tokens=6, do_sample=False)
        ids = prompt["input_ids"]   # the same greedy steps on the trained child, without a cache
        for _ in range(6):
            ids = torch.cat([ids, child(ids, torch.ones_like(ids)).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert generated.shape == (1, 10) and torch.equal(generated, ids)
    assert tokenizer.decode(generated[0]).startswith("def ")
    # a child of another vocabulary is refused before any training, in one line
    other = tmp_path / "lm-other.toml"
    other.write_text(card.read_text(encoding="utf-8").replace('name = "lm-tiny"', 'name = "lm-other"')
                     .replace(_gpt2(1, 16), _gpt2(1, 16, vocab=300)), encoding="utf-8")
    capsys.readouterr()
    assert main(["pairs", "check", str(other), "--methods", "kd"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the parent scores 258 entries per position but the child 300" in err
    assert "vocabularies" in err and f"[2, {BLOCK}, 258]" in err


def test_which_tokenizer_an_hf_export_carries_and_what_it_refuses(tmp_path):
    from types import SimpleNamespace

    from hkt_zoo.hf_export import HFExportError, export_hf, pair_tokenizer
    from hkt_zoo.text_data import ByteTokenizer

    folder = tmp_path / "pretrained"
    ByteTokenizer().save_pretrained(folder)     # a parent's pretrained folder with its tokenizer
    card = SimpleNamespace(dataset="token-recall", dataset_options={}, parent="transformers", child="transformers",
                           parent_options={"pretrained": str(folder)}, child_options={})
    tokenizer, source = pair_tokenizer(card)
    assert source == f"the parent's pretrained folder ({folder})" and tokenizer("ab")["input_ids"] == [97, 98]
    assert pair_tokenizer(SimpleNamespace(**{**vars(card), "parent_options": {}})) == (None, None)
    text = SimpleNamespace(**{**vars(card), "dataset": "text-files", "dataset_options": {"corpus": "python-stdlib"}})
    tokenizer, source = pair_tokenizer(text)
    assert source == "data set text-files (bytes)" and isinstance(tokenizer, ByteTokenizer)
    # a child that is not a transformers model: one line naming the formats that export it
    run = SimpleNamespace(path=tmp_path / "run", child=lambda: torch.nn.Linear(2, 2),
                          network_ref=lambda: ("my_models:small", {}))
    run.path.mkdir()
    with pytest.raises(HFExportError, match=r"this run's network 'my_models:small' is a Linear: use --format "
                                            r"safetensors, onnx or pt2"):
        export_hf(run)
