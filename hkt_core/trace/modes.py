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
import io
import logging
from collections.abc import Iterator
import torch
from torch import fx, nn

from ..adapters import Adapter
from ..errors import TraceError
from .names import BACKEND_KEY

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
        # that no grad-mode switch is recorded into the graph. A training-mode forward that branches
        # on a random value makes torch print the partial graph before it raises: the error we
        # raise says what happened, in one line (:func:`untraceable_in_training`).
        held = contextlib.redirect_stderr(io.StringIO()) if training else contextlib.nullcontext()
        with torch.no_grad() if not training else contextlib.nullcontext(), _quiet(_SHAPES_LOGGER), held:
            return export_trace(model, inputs, kwargs=adapter.concrete_args(model))


#: the logger that prints a whole graph when a trace meets a branch on a run-time value
_SHAPES_LOGGER = "torch.fx.experimental.symbolic_shapes"


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """``name``'s warnings held back for the duration (errors still pass)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def same_graph(a: fx.GraphModule, b: fx.GraphModule) -> bool:
    """Whether two traces of one model are the same program (the same generated code)."""
    return a is b or (a.meta.get(BACKEND_KEY) == b.meta.get(BACKEND_KEY) and a.code == b.code)


def mode_graphs(model: nn.Module, adapter: Adapter, eval_graph: fx.GraphModule,
                inputs: tuple[torch.Tensor, ...] | None) -> dict[bool, fx.GraphModule]:
    """``{False: eval_graph, True: train graph}`` for ``model``, the train graph traced by the eval
    graph's backend (the same object when both modes trace to the same code)."""
    backend = eval_graph.meta.get(BACKEND_KEY, "fx")
    try:
        try:
            train_graph = trace_in_mode(model, adapter, backend, inputs, True)
        except Exception:
            # Code that only training runs may defeat symbolic tracing (random masks sized by a
            # proxy): the train graph then comes from torch.export, as the eval graph would have.
            if backend != "fx" or inputs is None:
                raise
            train_graph = trace_in_mode(model, adapter, "export", inputs, True)
    except Exception as exc:
        raise TraceError(untraceable_in_training(model, exc, backend, inputs is None)) from exc
    if same_graph(train_graph, eval_graph):
        train_graph = eval_graph
    return {False: eval_graph, True: train_graph}


def untraceable_in_training(model: nn.Module, exc: Exception, backend: str, no_inputs: bool) -> str:
    """One line: why ``model`` has no train graph, and what to do. A branch on a value computed at
    run time (LayerDrop's ``if torch.rand([]) < layerdrop``, which skips whole layers at random) is
    no graph: the line says so and names the fix (turn it off for training with hkt)."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    name = type(model).__name__
    text = str(exc)
    chain = [exc, exc.__cause__, exc.__context__]
    if any(isinstance(e, GuardOnDataDependentSymNode) for e in chain) or "data-dependent" in text:
        return (f"{name} cannot be traced in training mode: its training-mode forward branches on a value "
                f"computed at run time, such as LayerDrop skipping layers at random, which no traced "
                f"graph can hold; turn it off for training with hkt (a transformers config's layerdrop = 0.0) - "
                f"its eval graph traces")
    first = text.splitlines()[0] if text else ""
    return (f"{name} cannot be traced in training mode by {backend} ({type(exc).__name__}: {first})"
            f"{'; pass example inputs for the torch.export fallback' if no_inputs else ''}")


__all__ = ["in_mode", "mode_graphs", "same_graph", "trace_in_mode", "untraceable_in_training"]

