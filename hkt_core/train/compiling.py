"""``torch.compile`` for a run (``--compile``): compile in place, fall back to eager with one line.

:func:`compile_module` compiles a module's ``__call__`` in place (like ``nn.Module.compile``): the
module stays the same object of the same class, so its ``state_dict`` keys, its adapter and every
reference to it are unchanged. Compilation happens at the first call (and again when a guard
fails, e.g. on switching to eval mode). If it fails there, the module is put back to eager
execution, one warning line says so, and the call is answered eagerly: a network that cannot
compile trains as it would without ``--compile``. :class:`CompileReport` remembers what compiled;
the run's ``summary.json`` records ``"compiled": true`` only if everything asked for did.
"""

from __future__ import annotations

import sys
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
        self.fallbacks: dict[str, str] = {}

    @property
    def compiled(self) -> bool:
        """True when something was compiled and nothing fell back."""
        return bool(self.modules) and not self.fallbacks

    def fallback(self, label: str, exc: BaseException) -> None:
        if label in self.fallbacks:
            return
        self.fallbacks[label] = _first_line(exc)
        if self.say is not None:
            self.say(f"warning: torch.compile could not compile the {label} ({self.fallbacks[label]}); "
                     f"it runs eagerly")

    def to_dict(self) -> dict[str, Any]:
        return {"compiled": self.compiled, "compiled_modules": [m for m in self.modules if m not in self.fallbacks],
                "compile_fallbacks": dict(self.fallbacks)}


def compile_module(module: nn.Module, label: str, report: CompileReport, **options: Any) -> nn.Module:
    """Compile ``module`` in place with ``torch.compile(**options)``; returns ``module``.

    A failure while compiling (at any call) restores eager execution for good and is reported once.
    """
    compiled = torch.compile(module._call_impl, **options)

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
            module._compiled_call_impl = None
            report.fallback(label, exc)
            return module._call_impl(*args, **kwargs)

    module._compiled_call_impl = call
    report.modules.append(label)
    return module


def is_compiled(module: nn.Module) -> bool:
    """True while ``module`` runs through :func:`compile_module`'s compiled call."""
    return getattr(module, "_compiled_call_impl", None) is not None
