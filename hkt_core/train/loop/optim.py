"""Optimisers and learning-rate schedules.

The schedule is a pure function of (epoch, step): nothing to save, so resuming cannot drift.
``cosine`` anneals per step from ``lr`` to 0 over the run; ``linear`` falls per step in a straight
line from ``lr`` to 0 at the end of the run (with ``warmup_epochs``: the transformer recipe, warm-up
then linear decay); ``multistep`` multiplies by ``gamma`` at each milestone (fractions of the
epochs); ``warmup_epochs`` ramps linearly from 0 first (its last step reaches ``lr``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...config import TrainConfig
from ...errors import ConfigError


class NoTrainableParameters(ConfigError):
    """The network a method trains has no parameter that requires a gradient."""


def build_optimizer(module: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over the trainable parameters; no decay on 1-D tensors
    (biases, normalisation scales), the common practice."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise NoTrainableParameters(f"{type(module).__name__} has no trainable parameters (none, or all with "
                                    f"requires_grad=False): there is nothing to train; give the child parameters "
                                    f"that require gradients")
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum,
                               nesterov=train.nesterov and train.momentum > 0)
    return torch.optim.AdamW(groups, lr=train.lr)


def learning_rate(train: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate for ``step`` (0-based) of ``epoch`` (0-based)."""
    progress = epoch + step / max(1, steps_per_epoch)
    if train.warmup_epochs and progress < train.warmup_epochs:
        return train.lr * (progress + 1 / max(1, steps_per_epoch)) / train.warmup_epochs
    if train.schedule in ("cosine", "linear"):
        span = max(1e-12, train.epochs - train.warmup_epochs)
        t = min(1.0, (progress - train.warmup_epochs) / span)
        if train.schedule == "linear":
            return train.lr * (1.0 - t)
        return 0.5 * train.lr * (1 + math.cos(math.pi * t))
    if train.schedule == "multistep":
        passed = sum(epoch >= round(m * train.epochs) for m in train.milestones)
        return train.lr * train.gamma ** passed
    return train.lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
