"""``text-classification-files``: labelled text from local files, through a local tokenizer.

**What it reads** (``train``, and ``test`` or a ``test_fraction`` of ``train``; local paths only,
URLs and hub names are refused in one line; in a card, a relative path resolves against the
card's folder):

- a CSV file (``.csv``; ``.tsv`` with tabs), the first row naming the columns;
- a JSON-lines file (``.jsonl`` / ``.json``): one object per line;
- a parquet file (``.parquet``): needs ``pyarrow`` or ``pandas`` (one line says so otherwise);
- a folder written by ``datasets.save_to_disk``: needs ``datasets``; a ``DatasetDict`` gives its
  ``train`` split to ``train`` and its ``test`` split to ``test`` when ``test`` is not given.

Columns are named by options: ``text_column`` (``text``), ``text_pair_column`` (none: single texts;
a second text per sample, as in NLI), ``label_column`` (``label``).

**Labels.** Integers (or CSV cells holding integers) are class ids as they are (``num_classes`` is
the largest plus one). Any other labels are names, given ids in sorted order. ``labels = [...]``
fixes the names and their order instead. The names in id order are ``info["class_names"]``.

**Tokens.** ``tokenizer`` is a local tokenizer folder (what ``save_pretrained`` writes), read with
``AutoTokenizer.from_pretrained(folder, local_files_only=True)``; special tokens are added as the
tokenizer adds them (``[CLS] ... [SEP]``). ``hkt pairs new`` fills it with the parent's pretrained
folder when that folder holds a tokenizer. A text longer than ``max_length`` tokens is cut to it
(``truncation = true``, counted in ``info["truncated"]``), or refused in one line naming its file
and line (``truncation = false``).

**Padding.** Every sequence is padded to the longest of the data set (at most ``max_length``), and
each training batch is cut to its own longest sequence (the bundle's ``augment``), as a padding
collator does. A sample is ``((input_ids, attention_mask), label)``, with ``token_type_ids`` third
when the samples are pairs of texts and the tokenizer makes them.

A bad row (a missing column, an empty text, a label that is not in ``labels``, a line that is not
JSON) stops the data set in one line: ``file:line: what is wrong``.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from hkt_core import ConfigError, DatasetBundle

from .text_data import load_saved, local_path as _text_files_path

#: the options of ``text-classification-files``
OPTIONS = ("train", "test", "test_fraction", "seed", "text_column", "text_pair_column", "label_column", "labels",
           "tokenizer", "max_length", "truncation", "format")
#: the options that name local files or folders (resolved against a card's folder)
PATH_OPTIONS = ("train", "test", "tokenizer")
FORMATS = ("auto", "csv", "tsv", "jsonl", "parquet", "saved")


def _fail(message: str) -> None:
    raise ConfigError(f"data set 'text-classification-files': {message}")


def local_path(value: Any, what: str) -> Path:
    """``value`` as an existing local path; a URL, a hub name or a missing path is refused in one line."""
    try:
        return _text_files_path(value, what)
    except ConfigError as exc:
        _fail(str(exc).removeprefix("data set 'text-files': "))
    raise AssertionError


# -- rows ----------------------------------------------------------------------------------------

class Row:
    __slots__ = ("where", "text", "pair", "label")

    def __init__(self, where: str, text: Any, pair: Any, label: Any) -> None:
        self.where, self.text, self.pair, self.label = where, text, pair, label


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.is_dir():
        return "saved"
    suffix = path.suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}.get(suffix, "")


def _columns_missing(where: str, found: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in found]
    if missing:
        _fail(f"{where}: no column {', '.join(map(repr, missing))} (columns: {', '.join(map(repr, found))}); "
              f"name the columns with text_column, text_pair_column and label_column")


def _csv_rows(file: Path, columns: Sequence[str], delimiter: str) -> list[Row]:
    try:
        handle = file.open(encoding="utf-8", newline="")
    except OSError as exc:
        _fail(f"{file} cannot be read ({exc.strerror or exc})")
    rows = []
    with handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        try:
            _columns_missing(f"{file}:1", reader.fieldnames or [], columns)
            for record in reader:
                where = f"{file}:{reader.line_num}"
                if None in record:   # more cells than the header names
                    _fail(f"{where}: {len(record) - 1 + len(record[None])} cells, the header names "
                          f"{len(reader.fieldnames or [])}; quote a text holding the delimiter")
                rows.append(_row(where, record, columns))
        except UnicodeDecodeError as exc:
            _fail(f"{file} is not UTF-8 text (byte {exc.start}): convert it")
        except csv.Error as exc:
            _fail(f"{file}:{reader.line_num}: not valid CSV ({exc})")
    return rows


def _jsonl_rows(file: Path, columns: Sequence[str]) -> list[Row]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        _fail(f"{file} is not UTF-8 text (byte {exc.start}): convert it")
    except OSError as exc:
        _fail(f"{file} cannot be read ({exc.strerror or exc})")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            _fail(f"{where}: not a JSON object ({exc.msg}); a JSON-lines file holds one object per line")
        if not isinstance(record, dict):
            _fail(f"{where}: a JSON {type(record).__name__}, not an object")
        _columns_missing(where, list(record), columns)
        rows.append(_row(where, record, columns))
    return rows


def _parquet_rows(file: Path, columns: Sequence[str]) -> list[Row]:
    records = None
    try:
        import pyarrow.parquet as pq

        records = pq.read_table(str(file)).to_pylist()
    except ImportError:
        try:
            import pandas

            records = pandas.read_parquet(str(file)).to_dict("records")
        except ImportError:
            _fail(f"{file} is a parquet file; reading it needs pyarrow or pandas (pip install pyarrow)")
    except Exception as exc:
        _fail(f"{file} could not be read as parquet ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})")
    rows = []
    for index, record in enumerate(records or []):
        where = f"{file} row {index}"
        _columns_missing(where, list(record), columns)
        rows.append(_row(where, record, columns))
    return rows


def _saved_rows(folder: Path, columns: Sequence[str], split: str) -> list[Row]:
    data, datasets = load_saved(folder, _fail)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            _fail(f"{folder} holds the splits {', '.join(sorted(data))}, no {split!r}")
        data, where = data[split], f"{folder} [{split}]"
    else:
        where = str(folder)
    _columns_missing(where, data.column_names, columns)
    return [_row(f"{where} row {i}", record, columns) for i, record in enumerate(data)]


def _row(where: str, record: dict, columns: Sequence[str]) -> Row:
    text_column, label_column = columns[0], columns[-1]
    pair_column = columns[1] if len(columns) == 3 else None
    return Row(where, record.get(text_column), record.get(pair_column) if pair_column else None,
               record.get(label_column))


def read_rows(path: Path, *, columns: Sequence[str], fmt: str = "auto", split: str = "train") -> list[Row]:
    """The rows of one local file or saved folder (module docstring)."""
    kind = _format_of(path, fmt)
    if kind == "saved":
        if not path.is_dir():
            _fail(f"{path} is not a folder written by datasets.save_to_disk")
        return _saved_rows(path, columns, split)
    if path.is_dir():
        _fail(f"{path} is a folder not written by datasets.save_to_disk; give a .csv, .tsv, .jsonl or .parquet file")
    if kind in ("csv", "tsv"):
        return _csv_rows(path, columns, "\t" if kind == "tsv" else ",")
    if kind == "jsonl":
        return _jsonl_rows(path, columns)
    if kind == "parquet":
        return _parquet_rows(path, columns)
    _fail(f"{path}: the format of a {path.suffix or 'suffix-less'} file is unknown; name it .csv, .tsv, .jsonl or "
          f".parquet, or set format to one of {', '.join(FORMATS[1:])}")
    return []


# -- labels --------------------------------------------------------------------------------------

def _as_label(value: Any) -> int | str | None:
    if value is None or isinstance(value, float) and value != value:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def label_ids(rows: Sequence[Row], names: Sequence[str] | None) -> tuple[list[int], list[str]]:
    """Each row's class id and the class names in id order (module docstring)."""
    values = []
    for row in rows:
        value = _as_label(row.label)
        if value is None:
            _fail(f"{row.where}: the label is empty")
        values.append(value)
    if names is not None:
        index = {str(n): i for i, n in enumerate(names)}
        ids = []
        for row, value in zip(rows, values):
            if str(value) not in index:
                _fail(f"{row.where}: label {value!r} is not one of labels = {list(names)!r}")
            ids.append(index[str(value)])
        return ids, [str(n) for n in names]
    if all(isinstance(v, int) for v in values):
        for row, value in zip(rows, values):
            if value < 0:
                _fail(f"{row.where}: label {value} is negative; class ids start at 0 (or give labels = [...])")
        count = max(values) + 1 if values else 0
        return [int(v) for v in values], [str(i) for i in range(count)]
    ordered = sorted({str(v) for v in values})
    index = {n: i for i, n in enumerate(ordered)}
    return [index[str(v)] for v in values], ordered


# -- tokens --------------------------------------------------------------------------------------

def load_tokenizer(name: Any) -> Any:
    """A local tokenizer folder read with ``AutoTokenizer`` (nothing downloads, no remote code)."""
    folder = local_path(name, "tokenizer")
    if not folder.is_dir():
        _fail(f"tokenizer {str(name)!r} must be a local tokenizer folder (what save_pretrained writes)")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        _fail("it needs transformers for its tokenizer: pip install 'hkt-zoo[transformers]'")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # the library's own errors are long
        _fail(f"tokenizer folder {str(folder)!r} could not be read ({type(exc).__name__}: "
              f"{' '.join(str(exc).split())[:200]})")


def _texts(rows: Sequence[Row], column: str) -> list[str]:
    out = []
    for row in rows:
        value = row.text if column == "text" else row.pair
        if not isinstance(value, str) or not value.strip():
            what = "empty" if value is None or isinstance(value, str) else f"a {type(value).__name__}, not a string"
            _fail(f"{row.where}: the {'text' if column == 'text' else 'second text'} is {what}")
        out.append(value)
    return out


class LabelledText(Dataset):
    """``((input_ids, attention_mask[, token_type_ids]), label)`` per sample."""

    def __init__(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return tuple(t[index] for t in self.inputs), self.labels[index]


def trim_batch(inputs, target, generator=None):
    """A batch of ``(input_ids, attention_mask, ...)`` cut to its longest unpadded sequence."""
    keep = max(int(inputs[1].sum(dim=1).max()), 1)
    return tuple(t[:, :keep] for t in inputs), target


def _check_options(test_fraction, seed, max_length, truncation, fmt, columns) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        _fail(f"max_length = {max_length!r} is invalid: an integer >= 2")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        _fail(f"test_fraction = {test_fraction!r} is invalid: a number between 0 and 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        _fail(f"seed = {seed!r} is invalid: an integer")
    if not isinstance(truncation, bool):
        _fail(f"truncation = {truncation!r} is invalid: true or false")
    if fmt not in FORMATS:
        _fail(f"format = {fmt!r} is invalid: one of {', '.join(FORMATS)}")
    for name, value in columns.items():
        if not isinstance(value, str) or not value:
            _fail(f"{name} = {value!r} is invalid: a column name")


def text_classification_files(train: str | None = None, test: str | None = None, test_fraction: float = 0.2,
                              seed: int = 0, text_column: str = "text", text_pair_column: str | None = None,
                              label_column: str = "label", labels: list[str] | None = None,
                              tokenizer: str | None = None, max_length: int = 128, truncation: bool = True,
                              format: str = "auto", **others: Any) -> DatasetBundle:
    """Labelled text from local CSV / JSON-lines / parquet files or a ``save_to_disk`` folder,
    tokenized by a local tokenizer folder (module docstring)."""
    if others:
        _fail(f"unknown option(s) {', '.join(sorted(others))}; allowed: {', '.join(OPTIONS)}")
    names = {"text_column": text_column, "label_column": label_column}
    if text_pair_column is not None:
        names["text_pair_column"] = text_pair_column
    _check_options(test_fraction, seed, max_length, truncation, format, names)
    if labels is not None and (not isinstance(labels, list) or not labels
                               or len({str(n) for n in labels}) != len(labels)):
        _fail(f"labels = {labels!r} is invalid: a list of distinct class names, in id order")
    if train is None:
        _fail("give train: a local .csv, .tsv, .jsonl or .parquet file, or a datasets.save_to_disk folder")
    if tokenizer is None:
        _fail("give tokenizer: a local tokenizer folder (hkt pairs new fills in the parent's pretrained folder "
              "when it holds one)")
    columns = [text_column, *([text_pair_column] if text_pair_column else []), label_column]
    train_path = local_path(train, "train")
    train_rows = read_rows(train_path, columns=columns, fmt=format, split="train")
    if test is not None:
        test_rows = read_rows(local_path(test, "test"), columns=columns, fmt=format, split="test")
    elif _format_of(train_path, format) == "saved" and _saved_splits(train_path) >= {"train", "test"}:
        test_rows = read_rows(train_path, columns=columns, fmt=format, split="test")
    else:
        order = list(range(len(train_rows)))
        random.Random(seed).shuffle(order)
        cut = int(round(len(order) * float(test_fraction)))
        if cut < 1 or cut >= len(order):
            _fail(f"{train_path} holds {len(order)} row(s): too few to keep a test_fraction of {test_fraction} "
                  f"apart; give a test file")
        held = set(order[:cut])
        test_rows = [r for i, r in enumerate(train_rows) if i in held]
        train_rows = [r for i, r in enumerate(train_rows) if i not in held]
    if not train_rows or not test_rows:
        _fail(f"{'train' if not train_rows else 'test'} holds no rows")
    rows = train_rows + test_rows
    ids, class_names = label_ids(rows, labels)
    if len(class_names) < 2:
        _fail(f"the labels name {len(class_names)} class ({', '.join(class_names)}); classification needs two or more")
    tok = load_tokenizer(tokenizer)
    texts = _texts(rows, "text")
    pairs = _texts(rows, "pair") if text_pair_column else None
    with_pairs = {"text_pair": pairs} if pairs is not None else {}
    full = tok(texts, **with_pairs, truncation=False, verbose=False)["input_ids"]
    over = [i for i, seq in enumerate(full) if len(seq) > max_length]
    if over and not truncation:
        row = rows[over[0]]
        _fail(f"{row.where}: {len(full[over[0]])} tokens, more than max_length = {max_length}; raise max_length or "
              f"set truncation = true ({len(over)} row(s) are longer)")
    encoded = tok(texts, **with_pairs, truncation=True, max_length=max_length, verbose=False)
    keys = ["input_ids", "attention_mask"] + (["token_type_ids"] if pairs is not None and
                                                "token_type_ids" in encoded else [])
    length = max(len(seq) for seq in encoded["input_ids"])
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    tensors = []
    for key in keys:
        fill = pad if key == "input_ids" else 0
        tensors.append(torch.tensor([list(seq) + [fill] * (length - len(seq)) for seq in encoded[key]],
                                    dtype=torch.long))
    target = torch.tensor(ids, dtype=torch.long)
    n = len(train_rows)
    train_set = LabelledText(tuple(t[:n] for t in tensors), target[:n])
    test_set = LabelledText(tuple(t[n:] for t in tensors), target[n:])
    info = {"task": "classification", "num_classes": len(class_names), "class_names": class_names,
            "vocab_size": len(tok), "pad_token_id": pad, "tokenizer": str(local_path(tokenizer, "tokenizer")),
            "inputs": keys, "max_length": max_length, "length": length, "truncated": len(over),
            "rows": {"train": n, "test": len(rows) - n}}
    return DatasetBundle(train_set, test_set, input_shapes=tuple((length,) for _ in keys), info=info,
                         augment=trim_batch)


def _saved_splits(folder: Path) -> set[str]:
    try:
        record = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return set(record.get("splits", [])) if isinstance(record, dict) else set()


def tokenizer_folder(folder: Any) -> Path | None:
    """``folder`` when it is a local folder holding a tokenizer (what ``save_pretrained`` writes), else None."""
    if not isinstance(folder, (str, Path)):
        return None
    path = Path(folder).expanduser()
    files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")
    return path if path.is_dir() and any((path / f).is_file() for f in files) else None


def propose_options(given: dict[str, Any], *, role: str, parent: tuple[str, dict[str, Any]] | None = None,
                    info: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """``hkt pairs new``: the data set's options with ``tokenizer`` filled from the parent's pretrained
    folder when it is not given and that folder holds a tokenizer."""
    options = dict(given)
    if "tokenizer" not in options and parent is not None:
        folder = tokenizer_folder(parent[1].get("pretrained"))
        if folder is not None:
            options["tokenizer"] = str(folder)
            return options, "tokenizer: the parent's pretrained folder"
    return options, ""


text_classification_files.path_options = PATH_OPTIONS   # type: ignore[attr-defined]
text_classification_files.propose_options = propose_options   # type: ignore[attr-defined]

__all__ = ["FORMATS", "OPTIONS", "PATH_OPTIONS", "LabelledText", "label_ids", "load_tokenizer", "propose_options",
           "read_rows", "text_classification_files", "tokenizer_folder", "trim_batch"]
