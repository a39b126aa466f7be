"""Data-aware alignment: linear CKA between a trained parent's and a child's activations.

``method="activation"`` compares what the two networks compute on real samples: a
:class:`Calibration` is a fixed set of samples (by default 256 drawn from the pair's training
split with seed 0, :func:`calibration_from_dataset`). Both models run on it in eval mode, a
``batch_size`` of samples at a time; every candidate's activations are gathered over all the
samples and linear CKA (:func:`hkt_core.align.score.cka_matrix`) is computed on the whole set.
Eval mode makes each sample's activation independent of the batch it ran in, so the scores, and
the pairs chosen, do not depend on the batch size (up to float rounding).

A candidate with more than :data:`MAX_FEATURES` features per sample is average-pooled over its
spatial (or token) axis to at most that many before the Gram matrix, which keeps memory bounded
(samples x MAX_FEATURES floats per candidate) on large maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from ..errors import AlignmentError
from ..trace.graph import evaluation
from .blocks import BlockGraph
from .score import MIN_CALIBRATION, centered_gram, cka_matrix

#: Default number of calibration samples and their seed.
CALIBRATION_SAMPLES, CALIBRATION_SEED = 256, 0
MAX_FEATURES = 4096


@attrs.frozen
class Calibration:
    """A fixed set of samples (a tuple of tensors, batch first) and where they came from."""

    inputs: tuple[torch.Tensor, ...]
    source: str = "example inputs"
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        if not self.inputs or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in self.inputs):
            raise AlignmentError("a calibration set is one or more batched tensors")
        if len({t.shape[0] for t in self.inputs}) != 1:
            raise AlignmentError(f"calibration tensors disagree on the number of samples: "
                                 f"{[t.shape[0] for t in self.inputs]}")
        if self.samples < MIN_CALIBRATION:
            raise AlignmentError(f"method='activation' compares activations on at least {MIN_CALIBRATION} "
                                 f"calibration samples; got {self.samples}")

    @property
    def samples(self) -> int:
        return int(self.inputs[0].shape[0])

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "samples": self.samples}
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def batches(self, batch_size: int):
        for start in range(0, self.samples, batch_size):
            yield tuple(t[start:start + batch_size] for t in self.inputs)


def as_calibration(value: Any) -> Calibration:
    if isinstance(value, Calibration):
        return value
    if isinstance(value, torch.Tensor):
        return Calibration((value,))
    if isinstance(value, (list, tuple)) and value and all(isinstance(t, torch.Tensor) for t in value):
        return Calibration(tuple(value))
    raise AlignmentError(f"calibration must be a Calibration, a tensor or a tuple of tensors, got "
                         f"{type(value).__name__}")


def calibration_from_dataset(dataset: Any, samples: int = CALIBRATION_SAMPLES, seed: int = CALIBRATION_SEED,
                             source: str = "dataset") -> Calibration:
    """``samples`` samples of a map-style dataset of ``(inputs, target)``, drawn without replacement
    with ``seed`` (all of them when the dataset is smaller)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < MIN_CALIBRATION:
        raise AlignmentError(f"calibration samples = {samples!r} is invalid: an integer >= {MIN_CALIBRATION}")
    n = len(dataset)
    if n < MIN_CALIBRATION:
        raise AlignmentError(f"the calibration data set has {n} samples; the activation method needs at least "
                             f"{MIN_CALIBRATION}")
    gen = torch.Generator().manual_seed(seed)
    index = torch.randperm(n, generator=gen)[:min(samples, n)].sort().values.tolist()
    rows = []
    for i in index:
        item = dataset[i]
        x = item[0] if isinstance(item, (list, tuple)) else item
        rows.append(tuple(x) if isinstance(x, (list, tuple)) else (x,))
    inputs = tuple(torch.stack([torch.as_tensor(r[k]) for r in rows]) for k in range(len(rows[0])))
    return Calibration(inputs, source=source, seed=seed)


class _Capture(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, wanted: set[fx.Node]) -> None:
        super().__init__(gm)
        self.wanted = wanted
        self.values: dict[fx.Node, torch.Tensor] = {}

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        if n in self.wanted and isinstance(value, torch.Tensor):
            self.values[n] = value
        return value


def activations(bg: BlockGraph, names: Sequence[str], inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The values of ``names`` on ``inputs`` (eval mode, no autograd)."""
    nodes = [bg.traced.nodes[n] for n in names]
    capture = _Capture(bg.traced.gm, set(nodes))
    with evaluation(bg.traced.model):
        capture.run(*inputs)
    return [capture.values[n] for n in nodes]


def _bounded(x: torch.Tensor) -> torch.Tensor:
    """Flattened per-sample features, average-pooled along the positions to <= MAX_FEATURES."""
    flat = x.detach().reshape(x.shape[0], x.shape[1], -1) if x.dim() > 2 else x.detach()[:, :, None]
    if flat.shape[1] * flat.shape[2] > MAX_FEATURES and flat.shape[2] > 1:
        keep = max(1, MAX_FEATURES // flat.shape[1])
        flat = F.adaptive_avg_pool1d(flat.float(), keep)
    return flat.reshape(x.shape[0], -1).to(torch.float64)


def _features(bg: BlockGraph, calibration: Calibration, batch_size: int) -> list[torch.Tensor]:
    device = next(iter(bg.traced.model.parameters()), torch.empty(0)).device
    names = [b.name for b in bg.candidates]
    parts: list[list[torch.Tensor]] = [[] for _ in names]
    for batch in calibration.batches(batch_size):
        values = activations(bg, names, tuple(t.to(device) for t in batch))
        for k, v in enumerate(values):
            parts[k].append(_bounded(v).cpu())
    return [torch.cat(p) for p in parts]


def cka_scores(bp: BlockGraph, bc: BlockGraph, calibration: Calibration, batch_size: int = 64) -> np.ndarray:
    """Linear CKA between every parent and child candidate on the calibration samples."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AlignmentError(f"batch_size = {batch_size!r} is invalid: a positive integer")
    gp = [centered_gram(a) for a in _features(bp, calibration, batch_size)]
    gc = [centered_gram(a) for a in _features(bc, calibration, batch_size)]
    return cka_matrix(gp, gc)




def calibration_for_pair(card: Any, manager: Any = None, samples: int = CALIBRATION_SAMPLES,
                         seed: int = CALIBRATION_SEED) -> Calibration:
    """``samples`` samples of ``card``'s training split (the split training uses, no augmentation)."""
    from ..plugins import default_manager
    from ..train.data import load_splits

    manager = manager or default_manager()
    splits = load_splits(card, card.train, manager)
    return calibration_from_dataset(splits.train, samples, seed, source=f"dataset {card.dataset} (train split)")


def trained_parent(card: Any, manager: Any = None, weights: Any = None):
    """``card``'s trained parent: from ``weights`` (a safetensors file) or the parent cache; never
    trains one (``hkt train PAIR --method parent`` does)."""
    from ..errors import ConfigError
    from ..plugins import default_manager
    from ..train import parents

    manager = manager or default_manager()
    if weights is not None:
        return parents.load_parent_file(card, manager, weights)[0]
    pretrained = parents.pretrained_parent(card, manager)   # the card's own weights, as they are
    if pretrained is not None:
        return pretrained[0]

    def missing(folder, train) -> None:
        raise ConfigError(f"pair {card.name!r} has no trained parent cached ({folder}); the activation method "
                          f"compares the trained parent: run `hkt train {card.name} --method parent` first, or "
                          f"give --parent-weights FILE")

    return parents.cached_parent(card, manager, train_missing=missing, say=lambda message: None)[0]


__all__ = ["CALIBRATION_SAMPLES", "CALIBRATION_SEED", "Calibration", "MAX_FEATURES", "activations",
           "as_calibration", "calibration_for_pair", "calibration_from_dataset", "cka_scores", "trained_parent"]
