"""A model's graph in each of its modes: one traced graph for eval, one for training.

Code that reads ``self.training`` while it is traced is decided then and there: torch.fx traces
through every module outside ``torch.nn`` (a batch norm with its activation, stochastic depth, a
dropout written as ``F.dropout(x, p, self.training)``), and ``torch.export`` specialises the whole
graph (its dropout and batch-norm operators take the mode as a constant). A graph traced in one
mode is therefore not the model in the other. As torchvision's ``create_feature_extractor`` does,
hkt traces a model once per mode and runs the graph of the mode the model is in:

- the **eval graph** is what alignment, probes and shapes read (:func:`hkt_core.trace.trace`
  traces in eval mode, whatever mode the model is in, and restores the model's modes after);
- the **train graph** is traced the same way (same backend, same adapter) with every module in
  training mode (by ``torch.export`` when only training-mode code defeats torch.fx, such as a random
  mask sized by the batch); where the two graphs are the same code (modules that decide at run time, such as
  ``nn.Dropout`` and ``nn.BatchNorm2d``, stay calls), one graph serves both.

Nothing here changes a weight or a buffer: tracing reads the model (fx) or runs it on fake tensors
(``torch.export``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
import torch
from torch import fx, nn

from ..adapters import Adapter
from ..errors import TraceError
from .names import BACKEND_KEY

#: the two modes, as ``nn.Module.training`` says them
MODES = (False, True)


@contextlib.contextmanager
def in_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Every module of ``model`` in ``training`` mode for the duration; each module's own mode is
    restored after (a model may keep some sub-modules in eval on purpose)."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def trace_in_mode(model: nn.Module, adapter: Adapter, backend: str, inputs: tuple[torch.Tensor, ...] | None,
                  training: bool) -> fx.GraphModule:
    """``model`` traced by ``backend`` (``"fx"`` or ``"export"``) with every module in ``training``
    mode; ``inputs`` (the example inputs) are needed by ``torch.export``."""
    from .tracer import fx_trace

    with in_mode(model, training):
        if backend == "fx":
            return fx_trace(model, adapter, adapter.concrete_args(model))
        if inputs is None:
            raise ValueError("tracing with torch.export needs example inputs")
        from .export import export_trace

        # Without autograd for the eval graph (as the trace always did); with it for training, so
        # that no grad-mode switch is recorded into the graph.
        with torch.no_grad() if not training else contextlib.nullcontext():
            return export_trace(model, inputs, kwargs=adapter.concrete_args(model))


def same_graph(a: fx.GraphModule, b: fx.GraphModule) -> bool:
    """Whether two traces of one model are the same program (the same generated code)."""
    return a is b or (a.meta.get(BACKEND_KEY) == b.meta.get(BACKEND_KEY) and a.code == b.code)


def mode_graphs(model: nn.Module, adapter: Adapter, eval_graph: fx.GraphModule,
                inputs: tuple[torch.Tensor, ...] | None) -> dict[bool, fx.GraphModule]:
    """``{False: eval_graph, True: train graph}`` for ``model``, the train graph traced by the eval
    graph's backend (the same object when both modes trace to the same code)."""
    backend = eval_graph.meta.get(BACKEND_KEY, "fx")
    try:
        train_graph = trace_in_mode(model, adapter, backend, inputs, True)
    except Exception as exc:
        # Code that only training runs may defeat symbolic tracing (random masks sized by a
        # proxy): the train graph then comes from torch.export, as the eval graph would have.
        if backend != "fx" or inputs is None:
            raise TraceError(f"{type(model).__name__} cannot be traced in training mode by {backend} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                             f"{'; pass example inputs for the torch.export fallback' if inputs is None else ''}"
                             ) from exc
        train_graph = trace_in_mode(model, adapter, "export", inputs, True)
    if same_graph(train_graph, eval_graph):
        train_graph = eval_graph
    return {False: eval_graph, True: train_graph}


def mode_of(model: nn.Module) -> bool:
    """The mode whose graph runs ``model``: its own ``training`` flag (what ``model.train()`` and
    ``model.eval()`` set for every module)."""
    return bool(model.training)


__all__ = ["MODES", "in_mode", "mode_graphs", "mode_of", "same_graph", "trace_in_mode"]

