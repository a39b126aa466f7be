"""Data for a run: the registered data set, a validation split carved from its training set, and
deterministic loaders that shard across processes.

The validation split uses a fixed seed (:data:`SPLIT_SEED`), not the run's seed: the parent and
every child of a pair see the same training, validation and test samples, so no method selects its
checkpoint on data another method (or the parent) trained on. ``train.train_samples = K`` keeps K
samples of the training split, the first K of that same fixed order, so every run given K learns
from the same subset, and a run given more (a parent trained on all, say) sees those K among its
own. Training order comes from :class:`torch.utils.data.DistributedSampler` seeded with
``train.seed`` and the epoch, so an epoch's order is a pure function of (seed, epoch): that is what
makes resuming exact, and with N processes each rank gets every N-th sample of the same global
order (the global batch is unchanged).

Every split is a :class:`SplitData` (the data set's name and the split ride with it), and every
loader checks each batch before it is put together: a sample whose structure, shape or dtype
differs from the others is refused in one line (:class:`~hkt_core.errors.SampleError`) naming the
data set, the split, the sample's index in the data set's training or test data, what the others
have and what it has, instead of a ``stack expects each tensor to be equal size`` traceback.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import attrs
import numpy as np
import torch
from torch.utils.data import (BatchSampler, DataLoader, Dataset, DistributedSampler, Subset, TensorDataset,
                              default_collate)

from ...config import TrainConfig
from ...data import DatasetBundle, as_pairs
from ...errors import ConfigError, DataError, HKTError, SampleError
from ...pairs.card import PairCard

SPLIT_SEED = 0


class SplitError(ConfigError):
    """The run's own split settings (``train.val_fraction``, ``train.train_samples``) do not fit the
    data set; the message names the limit."""


class SplitData(Subset):
    """One split of a data set: the samples at ``indices`` of ``dataset`` (the bundle's training or test
    data), with the data set's name and the split's, for the messages that name a sample."""

    def __init__(self, dataset: Dataset, indices, *, dataset_name: str, split: str) -> None:
        super().__init__(dataset, indices)
        self.dataset_name, self.split = dataset_name, split


@attrs.frozen
class Splits:
    bundle: DatasetBundle
    train: Dataset
    val: Dataset
    test: Dataset


def dataset_factory(name: str, manager):
    """A registered data set factory, or ``module:callable`` (the current directory is importable)."""
    if ":" in name:
        from ...models import resolve_callable

        return resolve_callable(name, "datasets", manager)
    return manager.lookup("datasets", name)


def load_splits(card: PairCard, train: TrainConfig, manager, *, parent: bool = False) -> Splits:
    """The run's splits; ``parent=True``: the parent's data (the card's ``[parent_dataset_options]``)."""
    factory = dataset_factory(card.dataset, manager)
    options = card.parent_data_options() if parent else card.dataset_options
    try:
        bundle = factory(**options)
    except HKTError:
        raise
    except (TypeError, ValueError) as exc:  # options the factory refuses (e.g. test_fraction=0.995)
        raise ConfigError(f"dataset {card.dataset!r} rejected options {options}: "
                          f"{' '.join(str(exc).split())}") from None
    if not isinstance(bundle, DatasetBundle):
        raise ConfigError(f"dataset {card.dataset!r} returned {type(bundle).__name__}, not a DatasetBundle")
    bundle = as_pairs(bundle, card.dataset)  # mapping samples ({"input_ids": ..., "label": ...}) as (inputs, target)
    check_input_shapes(card, bundle)
    n = len(bundle.train)
    n_val = max(1, round(train.val_fraction * n))
    if n - n_val < 1:
        raise SplitError(f"dataset {card.dataset!r} has {n} training samples: too few to carve a validation "
                          f"split of {train.val_fraction:.0%}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    kept = order[n_val:]
    if train.train_samples:
        if train.train_samples > len(kept):
            raise SplitError(f"train.train_samples = {train.train_samples} exceeds the {len(kept)} training samples "
                              f"of dataset {card.dataset!r} left after the validation split "
                              f"({train.val_fraction:g} of {n}); use at most {len(kept)}, or 0 for all")
        kept = kept[:train.train_samples]  # a prefix of the fixed-seed order: the same subset for every run
    name = card.dataset
    splits = Splits(bundle, SplitData(bundle.train, sorted(kept), dataset_name=name, split="train"),
                    SplitData(bundle.train, sorted(order[:n_val]), dataset_name=name, split="val"),
                    SplitData(bundle.test, range(len(bundle.test)), dataset_name=name, split="test"))
    for name in ("train", "val", "test"):  # in-memory data only: a vectorised look, no sample is loaded
        check_finite(card.dataset, name, getattr(splits, name), in_memory_only=True)
    return splits


#: Samples :func:`check_finite` loads one by one at most (data sets that are not held in memory).
SCAN_LIMIT = 100_000
_SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


def check_finite(dataset_name: str, split: str, dataset: Dataset, *, in_memory_only: bool = False) -> None:
    """Raise :class:`~hkt_core.errors.DataError` naming the first sample of ``dataset`` (one split) that
    holds a NaN or an infinity. In-memory data (``TensorDataset``, or a ``samples`` tensor) is looked
    at as a whole; other data sets are loaded sample by sample unless ``in_memory_only``."""
    _refuse(dataset_name, split, non_finite_sample(dataset, in_memory_only=in_memory_only))


def check_finite_batch(dataset_name: str, split: str, batch) -> None:
    """The same check on a collated ``(inputs, target)`` batch of a split's first samples (row = sample)."""
    for where, tensor in _tensors_of(batch):
        if torch.is_floating_point(tensor) and tensor.numel():
            bad = torch.nonzero((~torch.isfinite(tensor.reshape(len(tensor), -1))).any(1)).flatten()
            if len(bad):
                row = int(bad[0])
                _refuse(dataset_name, split, (row, f"{_kind_of_bad(tensor[row])} in {where}"))


def _refuse(dataset_name: str, split: str, found: tuple[int, str] | None) -> None:
    if found is not None:
        position, what = found
        raise DataError(f"data set {dataset_name!r}: sample {position} of the {_SPLIT_WORDS.get(split, split)} split "
                        f"holds {what}; hkt cannot learn from non-finite values: repair or drop that sample")


def non_finite_sample(dataset: Dataset, *, in_memory_only: bool = False) -> tuple[int, str] | None:
    """``(position in dataset, what)`` of the first sample with a non-finite value, or None."""
    base, positions = dataset, None
    if isinstance(dataset, Subset):
        base, positions = dataset.dataset, list(dataset.indices)
    tensors = _in_memory_tensors(base)
    if tensors is not None:
        for k, tensor in enumerate(tensors):
            if not torch.is_floating_point(tensor) or tensor.numel() == 0:
                continue
            rows = (~torch.isfinite(tensor.reshape(len(tensor), -1))).any(1)
            if positions is not None:
                rows = rows[torch.as_tensor(positions, dtype=torch.long)]
            bad = torch.nonzero(rows).flatten()
            if len(bad):
                i = int(bad[0])
                value = tensor[positions[i] if positions is not None else i]
                return i, f"{_kind_of_bad(value)} in {'its inputs' if k == 0 else f'tensor {k}'}"
        return None
    if in_memory_only or len(dataset) > SCAN_LIMIT:
        return None
    for i in range(len(dataset)):
        for where, tensor in _tensors_of(dataset[i]):
            if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all()):
                return i, f"{_kind_of_bad(tensor)} in {where}"
    return None


def _in_memory_tensors(base: Dataset) -> list[torch.Tensor] | None:
    if isinstance(base, TensorDataset):
        return list(base.tensors)
    samples = getattr(base, "samples", None)
    return [samples] if isinstance(samples, torch.Tensor) and len(samples) == len(base) else None


def _tensors_of(sample) -> list[tuple[str, torch.Tensor]]:
    inputs, target = sample if isinstance(sample, (tuple, list)) and len(sample) == 2 else (sample, None)
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    out = [(f"input {j}" if len(inputs) > 1 else "its inputs", t) for j, t in enumerate(inputs)
           if isinstance(t, torch.Tensor)]
    if isinstance(target, torch.Tensor):
        out.append(("its target", target))
    return out


def _kind_of_bad(tensor: torch.Tensor) -> str:
    t = tensor.detach()
    return "NaN" if bool(torch.isnan(t).any()) else "an infinity"


def check_input_shapes(card: PairCard, bundle: DatasetBundle) -> None:
    """The data's sample shapes must be what the pair's models expect (the card, batch dim dropped)."""
    inputs, _ = bundle.train[0]
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    got = tuple(tuple(t.shape) for t in inputs)
    expected = tuple(tuple(s[1:]) for s in card.input_shapes)
    if got != expected:
        raise ConfigError(f"dataset {card.dataset!r} yields inputs of shape {_fmt(got)} per sample but pair "
                          f"{card.name!r} expects {_fmt(expected)} (its input_shapes without the batch dimension)")


def _fmt(shapes) -> str:
    return ", ".join(str(s) for s in shapes) if len(shapes) != 1 else str(shapes[0])


# -- batches -------------------------------------------------------------------------------------

class _Positioned(Dataset):
    """``(position, sample)`` for each sample of ``dataset``, so a batch that cannot be put together
    names its samples."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        return i, self.dataset[i]

    def __getitems__(self, indices):
        many = getattr(self.dataset, "__getitems__", None)
        samples = many(list(indices)) if callable(many) else [self.dataset[i] for i in indices]
        return list(zip(indices, samples))


def signature(sample) -> list[tuple[str, str]]:
    """``(where, what)`` for each part of ``sample``: ``("its inputs", "a float32 tensor of shape (12,)")``.
    Two samples that batch together have equal signatures (ints and floats are both "a number",
    tuples and lists both "a sequence")."""
    out: list[tuple[str, str]] = []

    def walk(value, where: str) -> None:
        if isinstance(value, torch.Tensor):
            out.append((where, f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"))
        elif isinstance(value, np.ndarray):
            out.append((where, f"a {value.dtype} array of shape {tuple(value.shape)}"))
        elif isinstance(value, (bool, np.bool_)):
            out.append((where, "a boolean"))
        elif isinstance(value, numbers.Number):
            out.append((where, "a number"))
        elif isinstance(value, (str, bytes)):
            out.append((where, "a string"))
        elif isinstance(value, Mapping):
            out.append((where, f"a mapping with the keys {', '.join(sorted(map(str, value)))}"))
            for key in sorted(value, key=str):
                walk(value[key], f"{where}[{key!r}]")
        elif isinstance(value, (tuple, list)):
            out.append((where, f"a sequence of {len(value)}"))
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        else:
            out.append((where, f"a {type(value).__name__}"))

    if isinstance(sample, (tuple, list)) and len(sample) == 2:
        out.append(("the sample itself", "an (inputs, target) pair"))
        walk(sample[0], "its inputs")
        walk(sample[1], "its target")
    else:
        walk(sample, "the sample itself")
    return out


def _key(value):
    """A hashable key of ``value``'s structure, shapes and dtypes: equal exactly when :func:`signature`
    is (a few microseconds a sample, for every batch)."""
    if isinstance(value, torch.Tensor):
        return value.dtype, value.shape
    if isinstance(value, (tuple, list)):  # the usual (inputs, target) first; the abstract classes are slower
        return ("sequence", *[_key(v) for v in value])
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, np.ndarray):
        return "array", value.dtype, value.shape
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, numbers.Number):
        return "number"
    if isinstance(value, Mapping):
        names = sorted(value, key=str)
        return ("mapping", tuple(map(str, names)), *[_key(value[n]) for n in names])
    return type(value)


def _batch_key(batch):
    """:func:`_key` of a collated batch, the batch dimension left out (strings collate to a sequence of
    as many strings as the batch has samples: one key)."""
    if isinstance(batch, torch.Tensor):
        return batch.dtype, batch.shape[1:]
    if isinstance(batch, (tuple, list)):
        if batch and all(isinstance(b, (str, bytes)) for b in batch):
            return "strings"
        return ("sequence", *[_batch_key(b) for b in batch])
    if isinstance(batch, Mapping):
        names = sorted(batch, key=str)
        return ("mapping", tuple(map(str, names)), *[_batch_key(batch[n]) for n in names])
    return type(batch)


def _difference(found: list[tuple[str, str]], expected: list[tuple[str, str]]) -> str:
    """The first part in which ``found`` differs from ``expected``, in words."""
    for (where, what), (other_where, other_what) in zip(found, expected):
        if where != other_where:
            return f"differs from the others: it has {where} ({what}) where they have {other_where} ({other_what})"
        if what != other_what:
            return f"differs from the others in {where}: {what}, where the others have {other_what}"
    if len(found) > len(expected):
        return f"differs from the others: it has {found[len(expected)][0]} ({found[len(expected)][1]}), which they lack"
    return f"differs from the others: it lacks {expected[len(found)][0]} ({expected[len(found)][1]}), which they have"


def _locate(dataset: Dataset, position: int) -> tuple[SplitData | None, int]:
    """The split that ``position`` of ``dataset`` belongs to, and the sample's index in that split's
    data (the bundle's training or test data)."""
    while isinstance(dataset, Subset):
        position = int(dataset.indices[position])
        if isinstance(dataset, SplitData):
            return dataset, position
        dataset = dataset.dataset
    return None, position


class _Collate:
    """``default_collate`` of a batch of ``(position, sample)``, refusing in one line
    (:class:`~hkt_core.errors.SampleError`) a sample whose structure, shape or dtype differs from the
    others: the majority of its batch, else the split's first sample.

    The look costs one comparison a batch: the collated batch's key (:func:`_batch_key`) against the
    split's first sample's. Only a batch that fails to collate or whose key differs (a ragged row, a
    promoted dtype, a last batch of one odd sample) is looked at sample by sample."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._reference = None  # (sample key, batch key) of the split's first sample, at the first batch

    def __call__(self, items):
        positions = [p for p, _ in items]
        samples = [s for _, s in items]
        if self._reference is None:
            first = self.dataset[0]
            self._reference = _key(first), _batch_key(default_collate([first]))
        try:
            batch = default_collate(samples)
        except (RuntimeError, TypeError, ValueError) as exc:
            self._judge(positions, samples)
            split, index = _locate(self.dataset, positions[0])
            raise SampleError(f"data set {_name(split)!r}: the batch starting at sample {index} of its {_data(split)} "
                              f"({_split_words(split)}) cannot be put together ({' '.join(str(exc).split())[:200]}); "
                              f"give every sample the same structure, shapes and dtypes") from None
        if _batch_key(batch) != self._reference[1]:
            self._judge(positions, samples)
        return batch

    def _judge(self, positions: list[int], samples: list) -> None:
        """Name the sample of the batch that differs from the others, if one does."""
        keys = [_key(s) for s in samples]
        reference = self._reference[0]
        counts: dict = {}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        if len(counts) == 1:
            if keys[0] == reference:
                return  # every sample alike (a batch of ints and floats, say): nothing to name
            if len(samples) > 1:  # the whole batch agrees: the split's first sample is the odd one
                self._refuse(0, signature(self.dataset[0]), signature(samples[0]))
            self._refuse(positions[0], signature(samples[0]), signature(self.dataset[0]))
        best = max(counts, key=counts.get)
        expected = best if 2 * counts[best] > len(samples) else reference
        odd = next(i for i, k in enumerate(keys) if k != expected)
        usual = next((s for s, k in zip(samples, keys) if k == expected), None)
        self._refuse(positions[odd], signature(samples[odd]),
                     signature(usual if usual is not None else self.dataset[0]))

    def _refuse(self, position: int, found, expected) -> None:
        split, index = _locate(self.dataset, position)
        raise SampleError(f"data set {_name(split)!r}: sample {index} of its {_data(split)} ({_split_words(split)}) "
                          f"{_difference(found, expected)}; every sample must have the same structure, shapes and "
                          f"dtypes for hkt to batch them: repair or drop that sample")


def _data(split: SplitData | None) -> str:
    return "test data" if split is not None and split.split == "test" else "training data"


def first_samples(dataset: Dataset, n: int):
    """The first ``n`` samples of ``dataset`` (a split) collated into one batch, or a one-line
    :class:`~hkt_core.errors.SampleError` naming the sample unlike the others (for checks that look at
    a split's first samples before training)."""
    return _Collate(dataset)([(i, dataset[i]) for i in range(min(n, len(dataset)))])


def _name(split: SplitData | None) -> str:
    return split.dataset_name if split is not None else "?"


def _split_words(split: SplitData | None) -> str:
    return f"{_SPLIT_WORDS.get(split.split, split.split)} split" if split is not None else "data"


def train_loader(dataset: Dataset, train: TrainConfig, *, rank: int, world: int) -> tuple[DataLoader, DistributedSampler]:
    if train.batch_size % world:
        raise ConfigError(f"train.batch_size = {train.batch_size} must be divisible by the number of processes "
                          f"({world}): the global batch is split evenly across them")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=train.seed,
                                 drop_last=False)
    batches = BatchSampler(sampler, train.batch_size // world, drop_last=False)
    return DataLoader(_Positioned(dataset), batch_sampler=batches, num_workers=train.num_workers,
                      collate_fn=_Collate(dataset)), sampler


def eval_loader(dataset: Dataset, batch_size: int, *, rank: int, world: int, num_workers: int = 0) -> DataLoader:
    """Every rank evaluates every ``world``-th sample, none twice, so summed statistics are exact."""
    shard = Subset(dataset, list(range(rank, len(dataset), world))) if world > 1 else dataset
    return DataLoader(_Positioned(shard), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=_Collate(shard))


def split_batch(batch, device: torch.device):
    """``(inputs, target)`` of a collated batch with inputs as a tuple, moved to ``device``."""
    inputs, target = batch
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    inputs = tuple(t.to(device) for t in inputs)
    target = tuple(t.to(device) for t in target) if isinstance(target, (tuple, list)) else target.to(device)
    return inputs, target
