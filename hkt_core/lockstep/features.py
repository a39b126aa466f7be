"""Named intermediate values of a network, as a module: ``features(model, names)``.

The values are named as :func:`hkt_core.align` names them (:mod:`hkt_core.trace.names`: public
names, module-output aliases such as ``layer2``, scoped names such as ``layer1.0.add_1``, fx node
names). The model is traced once, by ``torch.fx`` or, when symbolic tracing fails and example inputs
are given, by the ``torch.export`` fallback (:func:`hkt_core.trace.trace`); the returned module's
graph keeps only what the named values need and shares the model's parameters and buffers, so
autograd reaches them and training the model changes what it computes.

The module runs the model in the mode the model is in (:mod:`hkt_core.trace.modes`): the model's
eval graph and its train graph are both built, and ``model.train()`` / ``model.eval()`` (or the
module's own ``.train()`` / ``.eval()``, which set the model's) pick which one runs, so dropout,
batch-norm statistics and anything else that reads ``self.training`` behave as in the model itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from ..errors import AlignmentError
from ..trace.names import BACKEND_KEY, name_table
from ..trace.modes import mode_graphs
from .rewrite import functionalize

#: the key of the model's own output in the dict (``features(..., output=True)``)
OUTPUT = "output"


class Features(nn.Module):
    """``forward(*inputs) -> {name: tensor}``: the named values of one run of the model (with
    autograd), and the model's own output under ``"output"`` when asked for."""

    def __init__(self, gm: fx.GraphModule, names: tuple[str, ...], backend: str, out_spec: Any,
                 train_gm: fx.GraphModule | None = None, model: nn.Module | None = None,
                 train_out_spec: Any = None) -> None:
        super().__init__()
        self.graph_module = gm
        self.names = names
        self.backend = backend
        self._out_spec = out_spec
        # The train graph shares the model's parameters and buffers with the eval graph; it and the
        # model stay outside the module tree, so the state dict holds each tensor once.
        object.__setattr__(self, "_train_module", gm if train_gm is None else train_gm)
        object.__setattr__(self, "_model", model)
        self._train_out_spec = out_spec if train_gm is None else train_out_spec
        self._bound: dict[int, tuple[int, ...]] = {}

    @property
    def train_module(self) -> fx.GraphModule:
        """The graph that runs while the model is in training mode (``graph_module`` runs in eval)."""
        return self._train_module

    def train(self, mode: bool = True) -> Features:
        """This module and the model it reads, in ``mode``."""
        super().train(mode)
        self._train_module.train(mode)
        if self._model is not None:
            self._model.train(mode)
        return self

    def forward(self, *inputs: torch.Tensor) -> dict[str, Any]:
        training = self._model.training if self._model is not None else self.training
        module = self._train_module if training else self.graph_module
        if self._model is not None and self.backend == "export":
            # an exported graph holds the model's tensors in a module tree of its own: follow moves
            # of the model that replaced them (``model.to(device)`` makes new buffers)
            key = tuple(map(id, self._model.buffers()))
            if key != self._bound.get(id(module)):
                from .interpreter import rebind

                rebind(module, self._model)
                self._bound[id(module)] = key
        values = module(*inputs)
        spec = self._train_out_spec if training else self._out_spec
        if spec is not None and OUTPUT in values:
            values = {**values, OUTPUT: pytree.tree_unflatten(list(values[OUTPUT]), spec)}
        return values

    def extra_repr(self) -> str:
        return f"names={list(self.names)}, backend={self.backend!r}"


def _traced(model: nn.Module, example_inputs: Any, adapter: Any) -> tuple[fx.GraphModule, str]:
    """The model's eval graph: fx, or the ``torch.export`` fallback when example inputs are given."""
    from ..trace.modes import trace_in_mode

    if example_inputs is None:
        try:
            return trace_in_mode(model, adapter, "fx", None, False), "fx"
        except Exception as exc:
            raise AlignmentError(f"features: {type(model).__name__} cannot be traced by torch.fx "
                                 f"({type(exc).__name__}); pass example_inputs=... for the torch.export "
                                 f"fallback") from None
    from ..trace.graph import trace

    traced = trace(model, example_inputs, adapter)
    return traced.gm, traced.backend


def features(model: nn.Module, names: str | Sequence[str], example_inputs: Any = None, *,
             adapter: Any = None, manager: Any = None, output: bool = False) -> Features:
    """A module whose forward returns ``{name: value}`` for ``names`` (module docstring).

    ``example_inputs`` (a tensor or a tuple; needed for the ``torch.export`` fallback) are run once
    to trace. ``adapter`` defaults to the one ``manager`` (default: the process-wide plugin
    manager) has for ``model``. ``output=True`` adds the model's own return value under
    ``"output"`` (one run gives the features and the prediction). An unknown name raises one
    :class:`~hkt_core.errors.AlignmentError` line naming it and valid names near it.
    """
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise AlignmentError(f"features: names must be a non-empty list of node names, got {list(names)!r}")
    if len(set(names)) != len(names) or (output and OUTPUT in names):
        raise AlignmentError(f"features: names must be distinct (and not {OUTPUT!r} with output=True), "
                             f"got {list(names)!r}")
    if adapter is None:
        from ..adapters import adapter_for

        if manager is None:
            from ..plugins.host import resolve_manager

            manager = resolve_manager(None)
        adapter = adapter_for(model, manager)
    gm, backend = _traced(model, example_inputs, adapter)
    inputs = None
    if example_inputs is not None:
        inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    graphs = mode_graphs(model, adapter, gm, inputs)
    built = {}
    for training, graph in graphs.items():
        if graph is gm and training:
            built[training] = built[False]
            continue
        where = f"the {backend}-traced {type(model).__name__}{' in training mode' if training else ''}"
        built[training] = _build(graph, names, name_table(graph).resolve(names, where), output, training)
    (eval_module, out_spec), (train_module, train_spec) = built[False], built[True]
    return Features(eval_module, names, backend, out_spec, train_gm=train_module, model=model,
                    train_out_spec=train_spec)


def _build(gm: fx.GraphModule, names: tuple[str, ...], nodes: list[fx.Node],
           output: bool, training: bool = False) -> tuple[fx.GraphModule, Any]:
    """A graph module returning the named nodes' values: a copy of ``gm``'s graph with its in-place
    operations rewritten out of place (a named value keeps the value it was computed with; a value
    an in-place module would overwrite is copied first), its output a dict."""
    for name, node in zip(names, nodes):
        if node.op == "placeholder":
            raise AlignmentError(f"features: {name!r} is a model input, not a value the model computes")
    graph = fx.Graph()
    val_map: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(gm.graph, val_map))
    module = fx.GraphModule(gm, graph, f"{type(gm).__name__}Features")
    module.meta[BACKEND_KEY] = gm.meta.get(BACKEND_KEY, "fx")
    functionalize(module, "model")
    out = next(n for n in module.graph.nodes if n.op == "output")
    result: dict[str, Any] = {name: val_map[node] for name, node in zip(names, nodes)}
    out_spec = None
    if output:
        result[OUTPUT] = out.args[0]
        codegen = getattr(gm.graph, "_codegen", None)
        out_spec = getattr(getattr(codegen, "pytree_info", None), "out_spec", None)
    out.args = (result,)
    _copy_before_inplace_modules(module, out)
    if training:
        _eliminate_dead_values(module)
    else:
        module.graph.eliminate_dead_code()
    module.recompile()
    return module, out_spec


def _eliminate_dead_values(gm: fx.GraphModule) -> None:
    """Dead code removed from a train graph, but never what updates the model's state (a batch
    norm's ``num_batches_tracked.add_(1)``, which nothing reads, a module with buffers, a mutating
    operator): the statistics move as when the model itself runs."""
    from .rewrite import updates_state

    graph = gm.graph
    for node in reversed(list(graph.nodes)):
        if node.op in ("placeholder", "output") or node.users or updates_state(node):
            continue
        if node.op == "call_function" and getattr(node.target, "_schema", None) is not None \
                and node.target._schema.is_mutable:
            continue
        if node.op == "call_module" and any(True for _ in gm.get_submodule(str(node.target)).buffers()):
            continue
        graph.erase_node(node)


def _copy_before_inplace_modules(gm: fx.GraphModule, out: fx.Node) -> None:
    """A returned value that a module called in place (``nn.ReLU(inplace=True)``) reads is cloned
    for that module, so the dict holds the value as it was computed."""
    returned = set(out.all_input_nodes)
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not node.args or node.args[0] not in returned:
            continue
        if getattr(gm.get_submodule(str(node.target)), "inplace", False) is True:
            with gm.graph.inserting_before(node):
                copied = gm.graph.call_method("clone", (node.args[0],))
            node.args = (copied, *node.args[1:])


__all__ = ["OUTPUT", "Features", "features"]
