"""Scoring a network: task loss and metrics over a data set (exact under sharding), and latency."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ...adapters import adapter_for, example_inputs_for
from ...tasks.metrics import MetricAccumulator
from .data import eval_loader, split_batch
from .distributed import World, all_sum


def evaluate(model: nn.Module, dataset, task, *, batch_size: int, device: torch.device, manager: Any,
             world: World = World(), num_workers: int = 0) -> dict[str, float]:
    """Task loss and metrics of ``model`` over ``dataset``, exact under sharding across processes
    (``manager``: the plugin manager the model's adapter is registered in)."""
    adapter = adapter_for(model, manager)
    acc = MetricAccumulator(task.metrics())
    loss_sum = torch.zeros(2, dtype=torch.float64)  # (sum of per-batch mean loss * batch, samples)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in eval_loader(dataset, batch_size, rank=world.rank, world=world.size, num_workers=num_workers):
            inputs, target = split_batch(batch, device)
            prediction = adapter.prediction(model(*inputs))
            n = inputs[0].shape[0]
            loss_sum += torch.tensor([float(task.loss(prediction, target)) * n, n], dtype=torch.float64)
            acc.update(prediction, target)
    model.train(was_training)
    loss_sum = all_sum(world, loss_sum)
    acc.reduce(lambda t: all_sum(world, t))
    values = {"loss": float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else float("nan")}
    values.update(acc.values())
    return values


def measure_latency(model: nn.Module, input_shapes, *, device: torch.device, manager: Any, batch: int = 32,
                    repeats: int = 10, dtypes=()) -> float:
    """Median milliseconds per sample of ``model`` in eval mode on a batch of ``batch`` samples."""
    shapes = [(batch, *s[1:]) for s in input_shapes]
    inputs = tuple(t.to(device) for t in example_inputs_for(model, shapes, dtypes, manager))
    was_training = model.training
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            start = time.perf_counter()
            model(*inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - start)
    model.train(was_training)
    return float(np.median(times)) * 1000.0 / batch


__all__ = ["evaluate", "measure_latency"]
