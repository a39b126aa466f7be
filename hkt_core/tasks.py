"""Tasks: the task loss, the inheritance loss, the distillation loss and the metrics of a task.

A task is registered in the ``losses`` registry under its name (``HKTConfig.task`` selects it).
"""

from __future__ import annotations

import torch

from .metrics import Metric


class Task:
    """Base class every registered task follows.

    - ``loss(prediction, target)``: the task loss (L2 on the native output; the baseline's loss).
    - ``inherit_loss(prediction, target)``: the MAE of DESIGN §2 used for L1 and L3.
    - ``distill_loss(student, teacher, target)``: the ``kd`` method's loss (includes the task term).
    - ``metrics()``: fresh :class:`~hkt_core.metrics.Metric` objects; the first is primary.
    - ``primary_metric`` / ``higher_is_better``: used to pick the best checkpoint on validation.
    """

    name: str = "task"
    primary_metric: str = "loss"
    higher_is_better: bool = False

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inherit_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, *,
                     temperature: float = 4.0, weight: float = 0.9) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> list[Metric]:
        raise NotImplementedError
