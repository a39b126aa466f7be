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
"""

from __future__ import annotations

import attrs
import torch
from torch.utils.data import (BatchSampler, DataLoader, Dataset, DistributedSampler, Subset, TensorDataset,
                              default_collate)

from ..config import TrainConfig
from ..data import DatasetBundle, as_pairs
from ..errors import ConfigError, DataError, HKTError
from ..pairs.card import PairCard

SPLIT_SEED = 0


class SplitError(ConfigError):
    """The run's own split settings (``train.val_fraction``, ``train.train_samples``) do not fit the
    data set; the message names the limit."""


@attrs.frozen
class Splits:
    bundle: DatasetBundle
    train: Dataset
    val: Dataset
    test: Dataset


def dataset_factory(name: str, manager):
    """A registered data set factory, or ``module:callable`` (the current directory is importable)."""
    if ":" in name:
        from ..models import resolve_callable

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
    splits = Splits(bundle, Subset(bundle.train, sorted(kept)), Subset(bundle.train, sorted(order[:n_val])),
                    bundle.test)
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


def train_loader(dataset: Dataset, train: TrainConfig, *, rank: int, world: int) -> tuple[DataLoader, DistributedSampler]:
    if train.batch_size % world:
        raise ConfigError(f"train.batch_size = {train.batch_size} must be divisible by the number of processes "
                          f"({world}): the global batch is split evenly across them")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=train.seed,
                                 drop_last=False)
    batches = BatchSampler(sampler, train.batch_size // world, drop_last=False)
    return DataLoader(dataset, batch_sampler=batches, num_workers=train.num_workers,
                      collate_fn=default_collate), sampler


def eval_loader(dataset: Dataset, batch_size: int, *, rank: int, world: int, num_workers: int = 0) -> DataLoader:
    """Every rank evaluates every ``world``-th sample, none twice, so summed statistics are exact."""
    shard = Subset(dataset, list(range(rank, len(dataset), world))) if world > 1 else dataset
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=default_collate)


def split_batch(batch, device: torch.device):
    """``(inputs, target)`` of a collated batch with inputs as a tuple, moved to ``device``."""
    inputs, target = batch
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    inputs = tuple(t.to(device) for t in inputs)
    target = tuple(t.to(device) for t in target) if isinstance(target, (tuple, list)) else target.to(device)
    return inputs, target
