"""What a registered data set factory returns.

``factory(**options) -> DatasetBundle``. ``train`` and ``test`` are map-style datasets yielding
``(inputs, target)`` where ``inputs`` is a tensor or a tuple of tensors (several model inputs).
Augmentation is applied by the trainer to training batches only, through ``augment`` (a callable
``(inputs, target, generator) -> (inputs, target)`` on a batch), so the validation split carved from
``train`` is never augmented. Nothing may be downloaded: data ships in packages, is generated, or is
read from a user's directory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from torch.utils.data import Dataset


@attrs.frozen
class DatasetBundle:
    train: Dataset
    test: Dataset
    #: example input shape(s) of one sample, without the batch dimension
    input_shapes: tuple[tuple[int, ...], ...]
    #: task-specific facts: ``num_classes``, ``class_names``, normalisation, ...
    info: dict[str, Any] = attrs.field(factory=dict)
    augment: Callable | None = None
