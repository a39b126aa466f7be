"""``text-files``: language-model data from local files, packed into fixed-length blocks.

**What it reads** (``files``: one path or a list; local paths only, URLs and hub names are
refused in one line; in a card, a relative path resolves against the card's folder: ``files``
and ``tokenizer`` are this data set's ``path_options``, resolved when the card is read):

- a plain-text file: one document (or several, split on ``separator``);
- a JSON-lines file (``.jsonl`` / ``.json``, or ``format = "jsonl"``): one document per line, the
  string under ``text_key`` (default ``text``);
- a folder written by ``datasets.save_to_disk``: one document per row (``text_key``), every split
  of a ``DatasetDict`` in the order of its split names; this needs the ``datasets`` package;
- any other folder: its ``.txt``, ``.text``, ``.md``, ``.rst`` and ``.jsonl`` files, recursively,
  in sorted order.

Or ``corpus = "python-stdlib"``: an offline corpus every machine with Python has, the source of a
fixed, sorted list of standard-library modules (:data:`STDLIB_CORPUS`, one document per module).

**Tokens.** ``tokenizer`` names a local tokenizer folder (read with ``AutoTokenizer.from_pretrained(
folder, local_files_only=True)``; special tokens are not added, its end-of-sequence token ends each
document). Without one, text is tokenized by :class:`ByteTokenizer`: the UTF-8 bytes (ids 0-255)
plus ``<|endoftext|>`` (256, ending each document) and ``<pad>`` (257): 258 ids.

**Splits, by document.** The documents are split into training, validation and test documents
(``val_fraction``, ``test_fraction`` of them, drawn with ``seed``; deterministic), and each split's
documents are concatenated (each followed by the end-of-sequence token) and packed into blocks of
``block_size`` tokens; the last block of a split is padded (attention mask 0, label -100). No
document has tokens in two splits. A sample is ``((input_ids, attention_mask), labels)``, all
int64 of length ``block_size``; ``labels`` are the ids, -100 on padding (the task ``causal-lm``
shifts them). The bundle's ``train`` and ``test`` are the training and test documents' blocks; the
validation documents' blocks are ``info["validation"]``.
"""

from __future__ import annotations

import json
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from hkt_core import ConfigError, DatasetBundle

from .causal_lm import IGNORE_INDEX

#: the options of ``text-files``
OPTIONS = ("files", "corpus", "tokenizer", "block_size", "val_fraction", "test_fraction", "seed", "text_key",
           "separator", "format")
FORMATS = ("auto", "text", "jsonl")
#: suffixes of the files a folder is read for
FOLDER_SUFFIXES = (".txt", ".text", ".md", ".rst", ".jsonl")
JSONL_SUFFIXES = (".jsonl", ".json")
#: the standard-library modules of the ``python-stdlib`` corpus (one document each), sorted
STDLIB_CORPUS = (
    "abc.py", "bisect.py", "calendar.py", "colorsys.py", "contextlib.py", "copy.py", "csv.py", "dataclasses.py",
    "difflib.py", "fnmatch.py", "fractions.py", "functools.py", "glob.py", "heapq.py", "keyword.py", "numbers.py",
    "operator.py", "queue.py", "random.py", "shlex.py", "statistics.py", "string.py", "textwrap.py", "tokenize.py",
)
CORPORA = ("python-stdlib",)


def _fail(message: str) -> None:
    raise ConfigError(f"data set 'text-files': {message}")


# -- the byte-level tokenizer -------------------------------------------------------------------

class ByteTokenizer:
    """UTF-8 bytes as token ids 0-255, plus ``<|endoftext|>`` (256) and ``<pad>`` (257)."""

    eos_token, pad_token = "<|endoftext|>", "<pad>"
    eos_token_id, pad_token_id = 256, 257
    vocab_size = 258
    name = "bytes"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        out, run = [], bytearray()
        for i in (int(x) for x in ids):
            if i < 256:
                run.append(i)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            if not skip_special_tokens:
                out.append(self.eos_token if i == self.eos_token_id else self.pad_token if i == self.pad_token_id
                           else f"<{i}>")
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def save_pretrained(self, folder: str | Path) -> None:
        """Write this tokenizer as a transformers fast tokenizer (``AutoTokenizer`` reads it back
        with the same ids): a byte-level BPE with no merges, GPT-2's byte-to-character map."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        chars = _bytes_to_unicode()
        vocab = {chars[b]: b for b in range(256)}
        vocab[self.eos_token], vocab[self.pad_token] = self.eos_token_id, self.pad_token_id
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([self.eos_token, self.pad_token])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=self.eos_token, bos_token=self.eos_token,
                                       pad_token=self.pad_token, unk_token=None)
        fast.save_pretrained(str(folder))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 bytes to printable characters (what byte-level BPE tokenizers use)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


class _HFTokenizer:
    """A local transformers tokenizer behind the small interface the data set uses."""

    def __init__(self, folder: Path) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            _fail(f"tokenizer {str(folder)!r} needs transformers: pip install 'hkt-zoo[transformers]'")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # the library's own errors are long
            text = " ".join(str(exc).split())[:200]
            _fail(f"tokenizer folder {str(folder)!r} could not be read ({type(exc).__name__}: {text})")
        tok = self.tokenizer
        self.name = str(folder)
        self.vocab_size = len(tok)
        self.eos_token_id = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.eos_token_id
        self.pad_token_id = pad if pad is not None else 0

    def batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return list(self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"])

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)


# -- paths ---------------------------------------------------------------------------------------

def local_path(value: Any, what: str) -> Path:
    """``value`` as an existing local path (a relative one against the working folder); a URL, a
    hub name or a missing path is refused in one line."""
    if not isinstance(value, (str, Path)) or not str(value).strip():
        _fail(f"{what} must be a local path (a string), got {value!r}")
    text = str(value).strip()
    if "://" in text or text.lower().startswith(("http:", "https:", "hf:", "s3:", "gs:")):
        _fail(f"{what} {text!r} is a URL: only local files are read (nothing downloads); download it yourself "
              f"and give its local path")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.exists():
        _fail(f"{what} {text!r} is not a local file or folder (looked for {path}); only local paths are read, "
              f"never hub names or URLs")
    return path


def stdlib_corpus_files() -> list[Path]:
    """The files of the ``python-stdlib`` corpus (:data:`STDLIB_CORPUS` under this Python's
    ``sysconfig.get_paths()["stdlib"]``)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [root / name for name in STDLIB_CORPUS]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        _fail(f"corpus 'python-stdlib': {', '.join(missing)} not found under {root}")
    return files


# -- documents -----------------------------------------------------------------------------------

def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{file} is not UTF-8 text (byte {exc.start}): convert it, or leave it out")
    except OSError as exc:
        _fail(f"{file} cannot be read ({exc.strerror or exc})")
    return ""


def _jsonl_documents(file: Path, text_key: str) -> list[str]:
    docs = []
    for number, line in enumerate(_read_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            _fail(f"{file}:{number} is not a JSON object ({exc.msg}); a JSON-lines file holds one object per line")
        value = record.get(text_key) if isinstance(record, dict) else None
        if not isinstance(value, str):
            keys = ", ".join(map(repr, record)) if isinstance(record, dict) else type(record).__name__
            _fail(f"{file}:{number} has no string under {text_key!r} (found {keys}); set text_key to the field "
                  f"that holds the text")
        docs.append(value)
    return docs


def load_saved(folder: Path, fail: Callable[[str], None]) -> tuple[Any, Any]:
    """``(data, the datasets module)`` of a folder written by ``datasets.save_to_disk``; a missing
    package or an unreadable folder is ``fail(message)`` (each data set's own one-line error)."""
    try:
        import datasets
    except ImportError:
        fail(f"{folder} was written by datasets.save_to_disk; reading it needs the datasets package "
             f"(pip install datasets)")
    try:
        return datasets.load_from_disk(str(folder)), datasets
    except Exception as exc:
        fail(f"{folder} could not be read by datasets.load_from_disk ({type(exc).__name__}: "
             f"{' '.join(str(exc).split())[:160]})")


def _saved_dataset_documents(folder: Path, text_key: str) -> list[str]:
    data, datasets = load_saved(folder, _fail)
    parts = [data[name] for name in sorted(data)] if isinstance(data, datasets.DatasetDict) else [data]
    docs: list[str] = []
    for part in parts:
        if text_key not in part.column_names:
            _fail(f"{folder} has no column {text_key!r} (columns: {', '.join(part.column_names)}); set text_key")
        docs.extend(str(v) for v in part[text_key])
    return docs


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))


def read_documents(paths: Sequence[Path], *, text_key: str = "text", separator: str | None = None,
                   fmt: str = "auto") -> list[str]:
    """The non-empty documents of ``paths``, in order (see the module docstring)."""
    docs: list[str] = []
    for path in paths:
        if path.is_dir():
            if _is_saved_dataset(path):
                docs.extend(_saved_dataset_documents(path, text_key))
                continue
            files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES)
            if not files:
                _fail(f"folder {path} holds no {', '.join(FOLDER_SUFFIXES)} file and was not written by "
                      f"datasets.save_to_disk")
            docs.extend(read_documents(files, text_key=text_key, separator=separator, fmt=fmt))
            continue
        jsonl = fmt == "jsonl" or (fmt == "auto" and path.suffix.lower() in JSONL_SUFFIXES)
        if jsonl:
            docs.extend(_jsonl_documents(path, text_key))
        else:
            text = _read_text(path)
            docs.extend(text.split(separator) if separator else [text])
    return [d for d in docs if d.strip()]


# -- blocks --------------------------------------------------------------------------------------

class TextBlocks(Dataset):
    """Packed blocks: ``((input_ids, attention_mask), labels)`` per block (labels -100 on padding)."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, documents: int) -> None:
        self.ids, self.mask, self.documents = ids, mask, documents
        self.labels = ids.masked_fill(mask == 0, IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        return (self.ids[index], self.mask[index]), self.labels[index]

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


def pack(documents: Sequence[list[int]], block_size: int, eos: int | None, pad: int) -> TextBlocks:
    """The documents' ids, each followed by ``eos``, concatenated and cut into blocks of
    ``block_size``; the last block padded with ``pad`` (mask 0)."""
    stream: list[int] = []
    for ids in documents:
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
    n = -(-len(stream) // block_size)
    ids = torch.full((n * block_size,), pad, dtype=torch.long)
    mask = torch.zeros(n * block_size, dtype=torch.long)
    if stream:
        ids[:len(stream)] = torch.tensor(stream, dtype=torch.long)
        mask[:len(stream)] = 1
    return TextBlocks(ids.view(n, block_size), mask.view(n, block_size), len(documents))


def split_documents(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Document indices per split (``train``, ``val``, ``test``), each in the documents' order: a
    permutation drawn with ``seed`` gives the first ``round(test_fraction * n)`` (at least one when
    the fraction is above 0) to test, the next to validation, the rest to training."""
    def count(fraction: float) -> int:
        return max(1, round(fraction * n)) if fraction > 0 else 0

    n_test, n_val = count(test_fraction), count(val_fraction)
    if n - n_test - n_val < 1:
        _fail(f"{n} document(s) cannot be split into training, validation ({val_fraction:g}) and test "
              f"({test_fraction:g}) documents: give more documents (or a separator) or smaller fractions")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    return {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
            "train": sorted(order[n_test + n_val:])}


def _check_options(block_size, val_fraction, test_fraction, seed, text_key, separator, fmt) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
        _fail(f"block_size = {block_size!r} is invalid: an integer >= 2 (tokens per sample)")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            _fail(f"{name} = {value!r} is invalid: a number in [0, 1) (a share of the documents)")
    if not test_fraction > 0:
        _fail("test_fraction = 0 is invalid: the test split needs documents (a number in (0, 1))")
    if val_fraction + test_fraction >= 1:
        _fail(f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves no training documents")
    if isinstance(seed, bool) or not isinstance(seed, int):
        _fail(f"seed = {seed!r} is invalid: an integer")
    if not isinstance(text_key, str) or not text_key:
        _fail(f"text_key = {text_key!r} is invalid: the name of the field that holds the text")
    if separator is not None and (not isinstance(separator, str) or not separator):
        _fail(f"separator = {separator!r} is invalid: a non-empty string (e.g. \"\\n\\n\") or left out")
    if fmt not in FORMATS:
        _fail(f"format = {fmt!r} is invalid: one of {', '.join(FORMATS)}")


def text_files(files: str | list[str] | None = None, corpus: str | None = None, tokenizer: str | None = None,
               block_size: int = 128, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
               text_key: str = "text", separator: str | None = None, format: str = "auto",
               **others: Any) -> DatasetBundle:
    """Local text (plain, JSON lines or a ``save_to_disk`` folder, or ``corpus = "python-stdlib"``)
    tokenized (a local tokenizer folder, else bytes), split by document and packed into blocks."""
    if others:
        _fail(f"unknown option(s) {', '.join(sorted(others))}; allowed: {', '.join(OPTIONS)}")
    _check_options(block_size, val_fraction, test_fraction, seed, text_key, separator, format)
    if (files is None) == (corpus is None):
        _fail("give either files (local text, JSON-lines or datasets.save_to_disk paths) or corpus = "
              f"{' or '.join(map(repr, CORPORA))}" + (", not both" if files is not None else ""))
    if corpus is not None:
        if corpus not in CORPORA:
            _fail(f"corpus = {corpus!r} is not one of {', '.join(CORPORA)} (local files go in files)")
        paths = stdlib_corpus_files()
    else:
        names = [files] if isinstance(files, str) else files
        if not isinstance(names, list) or not names:
            _fail(f"files = {files!r} is invalid: a path or a non-empty list of paths")
        paths = [local_path(name, "file") for name in names]
    tok: ByteTokenizer | _HFTokenizer
    if tokenizer is None:
        tok = ByteTokenizer()
    else:
        folder = local_path(tokenizer, "tokenizer")
        if not folder.is_dir():
            _fail(f"tokenizer {str(tokenizer)!r} must be a local tokenizer folder (what save_pretrained writes)")
        tok = _HFTokenizer(folder)
    docs = read_documents(paths, text_key=text_key, separator=separator, fmt=format)
    if not docs:
        _fail(f"{', '.join(str(p) for p in paths)[:200]} hold(s) no text")
    parts = split_documents(len(docs), float(val_fraction), float(test_fraction), seed)
    ids = tok.batch(docs)
    blocks = {name: pack([ids[i] for i in index], block_size, tok.eos_token_id, tok.pad_token_id)
              for name, index in parts.items()}
    info = {"task": "causal-lm", "vocab_size": int(tok.vocab_size), "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id, "tokenizer": tok.name, "block_size": block_size,
            "documents": {name: len(index) for name, index in parts.items()},
            "tokens": {name: b.tokens for name, b in blocks.items()},
            "validation": blocks["val"] if len(blocks["val"]) else None}
    return DatasetBundle(blocks["train"], blocks["test"], input_shapes=((block_size,), (block_size,)), info=info)


def tokenizer_of(options: dict[str, Any]) -> ByteTokenizer | _HFTokenizer:
    """The tokenizer a ``text-files`` data set with ``options`` uses (its folder resolved as the
    data set resolves it)."""
    name = options.get("tokenizer")
    if name is None:
        return ByteTokenizer()
    return _HFTokenizer(local_path(name, "tokenizer"))


text_files.path_options = ("files", "tokenizer")   # type: ignore[attr-defined]  # resolved against a card's folder

__all__ = ["CORPORA", "OPTIONS", "STDLIB_CORPUS", "ByteTokenizer", "TextBlocks", "local_path",
           "pack", "read_documents", "split_documents", "stdlib_corpus_files", "text_files", "tokenizer_of"]
