"""``torch.compile`` for a run (``--compile``): compile in place, fall back to eager with one line.

:func:`compile_module` compiles a module's ``__call__`` in place (like ``nn.Module.compile``): the
module stays the same object of the same class, so its ``state_dict`` keys, its adapter and every
reference to it are unchanged. Compilation happens at the first call (and again when a guard
fails, e.g. on switching to eval mode). If it fails there, the module is put back to eager
execution, one warning line says so, and the call is answered eagerly: a network that cannot
compile trains as it would without ``--compile``. :class:`CompileReport` remembers what compiled;
the run's ``summary.json`` records ``"compiled": true`` only if everything asked for did.

:func:`compile_family` compiles a :class:`hkt_core.Family`'s training step: the lockstep forward
recorded as one graph (:meth:`Family.record_step`), since ``torch.compile`` cannot trace the
Family's node-by-node interpreter itself; graphs of either tracing backend (torch.fx or
torch.export) are recorded. In eval mode the Family runs eagerly. A step that cannot be recorded or
compiled runs eagerly too, after the same one warning line (saying which of the two failed), and
the report records the fallback: never a silent fallback presented as compiled.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line[:200]}" if line else type(exc).__name__


def _stderr_line(message: str) -> None:
    print(f"hkt: {message}", file=sys.stderr, flush=True)


class CompileReport:
    """Which modules were compiled and which fell back to eager execution (and why)."""

    def __init__(self, say: Callable[[str], None] | None = _stderr_line) -> None:
        self.say = say
        self.modules: list[str] = []
        self.ran: set[str] = set()
        self.fallbacks: dict[str, str] = {}

    @property
    def compiled(self) -> bool:
        """True when something ran compiled and nothing fell back."""
        return bool(self.ran) and not self.fallbacks

    def fallback(self, label: str, exc: BaseException, stage: str = "") -> None:
        """``label`` runs eagerly from now on: one warning line says why (``stage``: what failed
        before the compiler ran, e.g. recording the Family's step), :meth:`to_dict` records it."""
        if label in self.fallbacks:
            return
        self.fallbacks[label] = f"{stage}: {_first_line(exc)}" if stage else _first_line(exc)
        if self.say is not None:
            self.say(f"warning: torch.compile could not compile the {label} ({self.fallbacks[label]}); "
                     f"it runs eagerly")

    def compiling(self, label: str):
        """Say that the first call of ``label`` compiles (a silent phase of tens of seconds on a
        CPU), then how long it took; returns the callback to call once it ran."""
        if label in self.ran or label in self.fallbacks or self.say is None:
            return lambda: None
        self.say(f"torch.compile: compiling the {label} on its first call (this takes a while)")
        started = time.perf_counter()

        def done() -> None:
            self.say(f"torch.compile: the {label} compiled in {time.perf_counter() - started:.1f} s")
        return done

    def to_dict(self) -> dict[str, Any]:
        return {"compiled": self.compiled, "compiled_modules": [m for m in self.modules if m in self.ran],
                "compile_fallbacks": dict(self.fallbacks)}


def compile_module(module: nn.Module, label: str, report: CompileReport, **options: Any) -> nn.Module:
    """Compile ``module`` in place with ``torch.compile(**options)``; returns ``module``.

    A failure while compiling (at any call) restores eager execution for good and is reported once.
    """
    compiled = torch.compile(module._call_impl, **options)

    def call(*args: Any, **kwargs: Any) -> Any:
        done = report.compiling(label)
        try:
            result = compiled(*args, **kwargs)
        except Exception as exc:  # any compiler failure means: run eagerly
            module._compiled_call_impl = None
            report.fallback(label, exc)
            return module._call_impl(*args, **kwargs)
        if label not in report.ran:
            done()
        report.ran.add(label)
        return result

    module._compiled_call_impl = call
    report.modules.append(label)
    return module


def compile_family(family: nn.Module, report: CompileReport, label: str = "Family's lockstep step",
                   **options: Any) -> nn.Module:
    """Compile the training-mode forward of ``family`` in place; returns ``family``."""
    steps: dict[int, Callable] = {}

    def call(*inputs: Any, **kwargs: Any) -> Any:
        if kwargs or not family.child.training:
            return family._call_impl(*inputs, **kwargs)
        done = report.compiling(label)
        step = steps.get(len(inputs))
        if step is None:
            try:
                recorded = family.record_step(*inputs)
            except Exception as exc:  # a graph the recorder cannot replay: run eagerly, say why
                family._compiled_call_impl = None
                report.fallback(label, exc, stage="the step could not be recorded as one graph")
                return family._call_impl(*inputs, **kwargs)
            step = steps[len(inputs)] = torch.compile(recorded, **options)
        try:
            if family.parent.training:
                family.parent.eval()
            outputs = step(*inputs)
        except Exception as exc:  # any compiler failure means: run eagerly
            family._compiled_call_impl = None
            report.fallback(label, exc)
            return family._call_impl(*inputs, **kwargs)
        if label not in report.ran:
            done()
        report.ran.add(label)
        return family.output(*outputs)

    family._compiled_call_impl = call
    report.modules.append(label)
    return family


def uncompile(module: nn.Module) -> None:
    """Back to eager execution (what :func:`compile_module` and :func:`compile_family` installed is dropped)."""
    module._compiled_call_impl = None


def is_compiled(module: nn.Module) -> bool:
    """True while ``module`` runs through :func:`compile_module`'s compiled call."""
    return getattr(module, "_compiled_call_impl", None) is not None
