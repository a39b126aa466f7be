"""The ``text-files`` data set of hkt-zoo: local text, JSON lines and save_to_disk folders, a byte-level
or a local tokenizer, splits by document, fixed-length blocks, and options refused in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from hkt_core import ConfigError
from hkt_core.plugins import default_manager
from hkt_zoo.causal_lm import IGNORE_INDEX
from hkt_zoo.text_data import OPTIONS, STDLIB_CORPUS, ByteTokenizer, stdlib_corpus_files, text_files

#: documents that each hold a marker no other holds
DOCS = [f"document {i:02d} says {'x' * (5 + 3 * i)} and ends." for i in range(10)]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _tokens(blocks) -> list[list[int]]:
    return [blocks.ids[i][blocks.mask[i] == 1].tolist() for i in range(len(blocks))]


def _documents_of(blocks) -> set[str]:
    """The documents a split holds, read back from its blocks (byte ids, 256 ends a document)."""
    stream = [i for row in _tokens(blocks) for i in row]
    text = ByteTokenizer().decode(stream, skip_special_tokens=False)
    return {d for d in text.split("<|endoftext|>") if d}


def test_the_registered_data_set_honours_its_contract(hkt_contracts):
    hkt_contracts.check_entry("datasets", "text-files", default_manager())


def test_byte_tokenizer_round_trips_and_names_its_specials():
    tok = ByteTokenizer()
    text = "naïve → text\n"
    assert tok.encode(text) == list(text.encode("utf-8")) and tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == 258 and (tok.eos_token_id, tok.pad_token_id) == (256, 257)
    assert tok.decode([104, 105, 256, 257], skip_special_tokens=False) == "hi<|endoftext|><pad>"


def test_the_byte_tokenizer_saved_for_transformers_gives_the_same_ids(tmp_path):
    transformers = pytest.importorskip("transformers")
    ByteTokenizer().save_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    text = "def f(x):\n    return 'é' * 2  # ok"
    assert hf(text)["input_ids"] == list(text.encode("utf-8"))
    assert (hf.eos_token_id, hf.pad_token_id, len(hf)) == (256, 257, 258)
    assert hf.decode(list(text.encode("utf-8")) + [256], skip_special_tokens=True) == text


def test_splits_are_by_document_deterministic_and_packed_into_blocks(tmp_path):
    corpus = _write(tmp_path, "corpus.txt", "\n\n".join(DOCS))
    bundle = text_files(files=str(corpus), separator="\n\n", block_size=16, val_fraction=0.2, test_fraction=0.2)
    info = bundle.info
    assert info["documents"] == {"test": 2, "val": 2, "train": 6} and info["vocab_size"] == 258
    splits = {"train": bundle.train, "val": info["validation"], "test": bundle.test}
    found = {name: _documents_of(blocks) for name, blocks in splits.items()}
    assert sum(len(d) for d in found.values()) == 10 and set().union(*found.values()) == set(DOCS)
    assert not (found["train"] & found["val"]) and not (found["train"] & found["test"]) and not (found["val"] & found["test"])
    for name, blocks in splits.items():
        (ids, mask), labels = blocks[len(blocks) - 1]       # the last block: padded, labels -100 there
        assert ids.shape == mask.shape == labels.shape == (16,) and ids.dtype == torch.long
        assert torch.equal(labels, ids.masked_fill(mask == 0, IGNORE_INDEX))
        assert bool((ids[mask == 0] == 257).all()) and info["tokens"][name] == int(blocks.mask.sum())
        assert int(blocks.mask[:-1].sum()) == 16 * (len(blocks) - 1)    # only the last block is padded
    again = text_files(files=str(corpus), separator="\n\n", block_size=16, val_fraction=0.2, test_fraction=0.2)
    assert torch.equal(again.train.ids, bundle.train.ids) and torch.equal(again.test.ids, bundle.test.ids)
    other = text_files(files=str(corpus), separator="\n\n", block_size=16, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert _documents_of(other.test) != found["test"]


def test_json_lines_folders_and_a_local_tokenizer_folder(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    data = tmp_path / "data"
    (data / "more").mkdir(parents=True)
    _write(data, "a.jsonl", "\n".join(json.dumps({"body": d, "id": i}) for i, d in enumerate(DOCS[:6])) + "\n\n")
    _write(data / "more", "b.txt", DOCS[6])
    _write(data / "more", "c.md", DOCS[7])
    _write(data / "more", "ignored.csv", "not, read")
    bundle = text_files(files=str(data), text_key="body", block_size=8)
    assert sum(bundle.info["documents"].values()) == 8
    # a local tokenizer folder (here: the byte-level tokenizer saved for transformers) gives the same ids
    ByteTokenizer().save_pretrained(tmp_path / "tok")
    monkeypatch.chdir(tmp_path)   # relative paths resolve against the working folder
    local = text_files(files="data", text_key="body", block_size=8, tokenizer="tok")
    assert local.info["tokenizer"] == str(tmp_path / "tok") and local.info["eos_token_id"] == 256
    assert torch.equal(local.train.ids, bundle.train.ids) and torch.equal(local.test.ids, bundle.test.ids)
    with pytest.raises(ConfigError, match=r"a\.jsonl:1 has no string under 'text' \(found 'body', 'id'\)"):
        text_files(files="data/a.jsonl")
    _write(tmp_path, "bad.jsonl", '{"text": "ok"}\n{oops\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2 is not a JSON object"):
        text_files(files="bad.jsonl")


@pytest.mark.parametrize("options, message", [
    ({"files": "x.txt", "revision": "main"}, "unknown option(s) revision; allowed: " + ", ".join(OPTIONS)),
    ({"files": "https://example.org/corpus.txt"}, "is a URL: only local files are read"),
    ({"files": "wikitext"}, "'wikitext' is not a local file or folder"),
    ({"files": "x.txt", "tokenizer": "gpt2"}, "tokenizer 'gpt2' is not a local file or folder"),
    ({"files": "x.txt", "tokenizer": "hf://openai/gpt2"}, "is a URL"),
    ({}, "give either files"),
    ({"files": "x.txt", "corpus": "python-stdlib"}, "not both"),
    ({"corpus": "wikipedia"}, "corpus = 'wikipedia' is not one of python-stdlib"),
    ({"files": "x.txt", "block_size": 1}, "block_size = 1 is invalid"),
    ({"files": "x.txt", "test_fraction": 0}, "test_fraction = 0 is invalid"),
    ({"files": "x.txt", "val_fraction": 0.5, "test_fraction": 0.5}, "leaves no training documents"),
    ({"files": "x.txt"}, "1 document(s) cannot be split"),
])
def test_bad_options_and_remote_names_fail_in_one_line(tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "x.txt", "one document only")
    with pytest.raises(ConfigError) as info:
        text_files(**options)
    text = str(info.value)
    assert text.startswith("data set 'text-files': ") and message in text and "\n" not in text


def test_a_save_to_disk_folder_is_read_with_datasets_or_refused_without(tmp_path, monkeypatch):
    folder = tmp_path / "saved"
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is not None:
        datasets.Dataset.from_dict({"text": DOCS}).save_to_disk(str(folder))
        bundle = text_files(files=str(folder), block_size=8)
        assert sum(bundle.info["documents"].values()) == len(DOCS)
    else:
        folder.mkdir()
        _write(folder, "dataset_info.json", "{}")
        _write(folder, "state.json", "{}")
    monkeypatch.setitem(sys.modules, "datasets", None)   # as where datasets is not installed
    with pytest.raises(ConfigError, match=r"was written by datasets\.save_to_disk; reading it needs the datasets "
                                          r"package \(pip install datasets\)"):
        text_files(files=str(folder))


def test_the_python_stdlib_corpus_is_offline_and_fixed():
    files = stdlib_corpus_files()
    assert [f.name for f in files] == sorted(STDLIB_CORPUS) and len(files) == 24
    size = sum(f.stat().st_size for f in files)
    bundle = text_files(corpus="python-stdlib", block_size=256)
    info = bundle.info
    assert sum(info["documents"].values()) == 24
    # byte tokens: every byte of the 24 files (ASCII and UTF-8 source) plus one end-of-text per file
    text_bytes = sum(len(f.read_text(encoding="utf-8").encode("utf-8")) for f in files)
    assert sum(info["tokens"].values()) == text_bytes + 24 and text_bytes == size
