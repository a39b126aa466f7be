"""What a registered data set factory returns.

``factory(**options) -> DatasetBundle``. ``train`` and ``test`` are map-style datasets yielding
``(inputs, target)`` where ``inputs`` is a tensor or a tuple of tensors (several model inputs).
Augmentation is applied by the trainer to training batches only, through ``augment`` (a callable
``(inputs, target, generator) -> (inputs, target)`` on a batch), so the validation split carved from
``train`` is never augmented. Nothing may be downloaded: data ships in packages, is generated, or is
read from a user's directory.

Samples may also be mappings, as Hugging Face data sets yield them (``{"input_ids": ...,
"attention_mask": ..., "label": ...}``): :func:`as_pairs` reads them as ``(inputs, target)``. The
target is the value under the bundle's ``info["target_key"]``, else the first of
:data:`TARGET_KEYS` the sample has; the inputs are the values under ``info["input_keys"]`` in that
order, else every other key, those of :data:`INPUT_ORDER` first in that order (the order zoo models
take them positionally: token ids, then the attention mask, then token types), the rest in the
sample's own order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch.utils.data import Dataset

from .errors import DataError


class SampleFormError(DataError):
    """A data set's mapping samples do not say which value is the target or which are the inputs."""


#: the keys of a mapping sample that may hold the target, in the order they are looked for
TARGET_KEYS = ("labels", "label", "target", "targets", "y")
#: input keys of a mapping sample that come first, in this order (the rest follow in the sample's order)
INPUT_ORDER = ("input_ids", "pixel_values", "input_values", "attention_mask", "token_type_ids", "position_ids")


@attrs.frozen
class DatasetBundle:
    train: Dataset
    test: Dataset
    #: example input shape(s) of one sample, without the batch dimension
    input_shapes: tuple[tuple[int, ...], ...]
    #: task-specific facts: ``num_classes``, ``class_names``, normalisation, ...
    info: dict[str, Any] = attrs.field(factory=dict)
    augment: Callable | None = None


class MappingSamples(Dataset):
    """A data set of mapping samples read as ``(inputs, target)``: ``inputs`` the values under
    ``input_keys`` (a tensor for one key, a tuple for several), ``target`` the value under
    ``target_key``; values become tensors."""

    def __init__(self, dataset: Dataset, input_keys: Sequence[str], target_key: str, *, name: str = "dataset") -> None:
        self.dataset, self.input_keys, self.target_key, self.name = dataset, tuple(input_keys), target_key, name

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        sample = self.dataset[index]
        if not isinstance(sample, Mapping):
            raise SampleFormError(f"data set {self.name!r}: sample {index} is a {type(sample).__name__}, not a "
                                  f"mapping like its first sample; every sample must have the same form")
        missing = [k for k in (*self.input_keys, self.target_key) if k not in sample]
        if missing:
            raise SampleFormError(f"data set {self.name!r}: sample {index} has no {', '.join(map(repr, missing))} "
                                  f"(keys: {', '.join(map(repr, sample))}); every sample needs the keys "
                                  f"{', '.join(map(repr, (*self.input_keys, self.target_key)))}")
        inputs = tuple(torch.as_tensor(sample[k]) for k in self.input_keys)
        return (inputs[0] if len(inputs) == 1 else inputs), torch.as_tensor(sample[self.target_key])


def mapping_keys(sample: Mapping, info: Mapping[str, Any], name: str = "dataset") -> tuple[tuple[str, ...], str]:
    """``(input_keys, target_key)`` of a mapping sample by the rule of this module's docstring."""
    target = info.get("target_key") or next((k for k in TARGET_KEYS if k in sample), None)
    if target is None or target not in sample:
        raise SampleFormError(f"data set {name!r} yields mappings with keys {', '.join(map(repr, sample))}, none "
                              f"of which holds the target: name it one of {', '.join(map(repr, TARGET_KEYS))}, or "
                              f"set info['target_key'] in its DatasetBundle")
    if info.get("input_keys"):
        keys = tuple(info["input_keys"])
        absent = [k for k in keys if k not in sample]
        if absent:
            raise SampleFormError(f"data set {name!r}: info['input_keys'] names {', '.join(map(repr, absent))}, "
                                  f"which its samples do not have (keys: {', '.join(map(repr, sample))})")
    else:
        rest = [k for k in sample if k != target]
        keys = tuple([k for k in INPUT_ORDER if k in rest] + [k for k in rest if k not in INPUT_ORDER])
    if not keys:
        raise SampleFormError(f"data set {name!r}: its samples hold only the target {target!r}, no model input")
    return keys, target


def as_pairs(bundle: DatasetBundle, name: str = "dataset") -> DatasetBundle:
    """``bundle`` with mapping samples read as ``(inputs, target)`` (:class:`MappingSamples`); a
    bundle whose samples already are pairs is returned as it is. The keys chosen are recorded in
    ``info["input_keys"]`` and ``info["target_key"]``."""
    if len(bundle.train) == 0:  # type: ignore[arg-type]
        return bundle
    first = bundle.train[0]
    if not isinstance(first, Mapping):
        return bundle
    keys, target = mapping_keys(first, bundle.info, name)
    return attrs.evolve(bundle, train=MappingSamples(bundle.train, keys, target, name=name),
                        test=MappingSamples(bundle.test, keys, target, name=name),
                        info={**bundle.info, "input_keys": list(keys), "target_key": target})
