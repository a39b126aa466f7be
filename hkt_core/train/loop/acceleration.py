"""A run's speed settings applied to its method: precision, ``torch.compile``, channels-last.

The trainer holds one :class:`Acceleration` per run and calls it at five points: :meth:`prepare`
once the method is built (memory format, compilation), :meth:`inputs` on every batch,
:meth:`autocast` around the training step's forward, :meth:`step` for backward and the optimiser
step, and :meth:`finish` before the final evaluation. What it did goes into ``summary.json``
(:meth:`summary`) and, for an fp16 run, the loss scale into ``state.json`` (:meth:`state_dict`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .compiling import CompileReport, compile_family, compile_module, uncompile
from .memory_format import inputs_channels_last, to_channels_last
from .precision import MixedPrecision


class Acceleration:
    """``train.precision``, ``train.compile`` and ``train.channels_last`` for one run."""

    def __init__(self, train: Any, device: torch.device, say: Callable[[str], None] | None = None) -> None:
        self.train = train
        self.amp = MixedPrecision(train.precision, device)
        self.report = CompileReport(say) if say is not None else CompileReport()
        self._compiled: list[nn.Module] = []

    def prepare(self, method: Any) -> None:
        """Channels-last and compilation for the method's networks: the trainable module (the
        child, or the Family for HKT), the deployed child and the frozen parent. A network is only
        compiled when it is called, so one the method never calls directly costs nothing."""
        from ...family import Family

        roles = [("child", method.deployed()), ("trainable", method.trainable_module()),
                 ("parent", getattr(method, "teacher", None) or method.ctx.parent)]
        seen: set[int] = set()
        for role, module in roles:
            if module is None or id(module) in seen:
                continue
            seen.add(id(module))
            if self.train.channels_last:
                to_channels_last(module)
            if not self.train.compile:
                continue
            if isinstance(module, Family):
                compile_family(module, self.report)
            else:
                compile_module(module, role if role != "trainable" else type(module).__name__, self.report)
            self._compiled.append(module)

    def inputs(self, inputs: tuple) -> tuple:
        return inputs_channels_last(inputs) if self.train.channels_last else inputs

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.amp.autocast()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters: Iterable[nn.Parameter]) -> None:
        self.amp.step(loss, optimizer, parameters, self.train.grad_clip)

    def finish(self) -> None:
        """Eager execution again: the final test evaluation and the latency are the deployed child's as exported."""
        for module in self._compiled:
            uncompile(module)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"precision": self.train.precision, "compiled": self.report.compiled,
                               "channels_last": bool(self.train.channels_last)}
        if self.train.compile:
            details = self.report.to_dict()
            out["compiled_modules"] = details["compiled_modules"]
            if details["compile_fallbacks"]:
                out["compile_fallbacks"] = details["compile_fallbacks"]
        return out

    def state_dict(self) -> dict[str, Any] | None:
        return self.amp.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.amp.load_state_dict(state)
