"""Tracing a model into a graph the engine can reason about.

:func:`trace` turns any ``nn.Module`` plus example inputs into a :class:`TracedModel`: an fx
GraphModule sharing parameters with the model (backend ``"fx"``, or ``"export"`` when symbolic
tracing fails on control flow), each value's shape, and a networkx DiGraph of the values whose
nodes carry ``op``, ``module`` (qualified path of the innermost module the value belongs to),
``module_type``, ``shape`` (batch dimension included), ``params``, ``flops`` (per sample, an
estimate: 2 x multiply-accumulates for convolutions, linear maps and matrix products; for an
opaque leaf block 2 x parameters x output positions; one per output element otherwise) and ``index`` (topological position). ``fx_node`` maps back.

A size that depends on the inputs' values rather than their shapes (an export graph's unbacked
symbol ``u0``: the positions a boolean mask selects, as in the end-of-sequence lookup of T5 and
BART classifiers) is no size of the graph: such a value has ``data_dependent`` set and ``shape``
None, so it never becomes a mixing point; ``example_shape`` (and its ``flops``) is the size seen
when the graph ran on the example inputs. Every other value has ``example_shape == shape``.

The model runs once in eval mode on the example inputs (its train/eval state is restored and no
gradient is recorded), which checks the input shapes and finds the prediction among its outputs.
The graph is the model in eval mode, by either backend (:mod:`hkt_core.trace.modes`: code that
reads ``self.training`` is decided while tracing, so a model run in training mode gets a train graph
of its own); an export graph is specialised to the example shapes where the model pins them.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import attrs
import networkx as nx
import torch
from torch import fx, nn
from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode, has_free_unbacked_symbols
from torch.utils import _pytree as pytree

from ..adapters import Adapter, GenericAdapter
from ..errors import TraceError
from .modes import in_mode
from .names import NameTable, name_table
from .tracer import fx_trace

log = logging.getLogger(__name__)

#: Nodes that are plumbing rather than values of the network.
_SKIPPED_OPS = ("get_attr", "output")


@attrs.define(eq=False)
class TracedModel:
    """One model's traced graph, its shapes and where its prediction is."""

    model: nn.Module
    gm: fx.GraphModule
    backend: str
    graph: nx.DiGraph
    #: public name -> fx node (every value node; aliases resolve through :attr:`aliases`)
    nodes: dict[str, fx.Node]
    #: fx node -> public name
    names: dict[fx.Node, str]
    #: alternative names (inner module paths, fx node names) -> public name
    aliases: dict[str, str]
    input_shapes: tuple[tuple[int, ...], ...]
    inputs: tuple[str, ...]
    #: the model's outputs (tensor leaves of what forward returns, in order) and the prediction
    outputs: tuple[str, ...]
    prediction: str
    #: value names in topological order
    order: tuple[str, ...]
    #: every name each value answers to (the naming service the tracer built)
    table: NameTable | None = None
    #: the adapter the model was traced with
    adapter: Adapter | None = None

    def __repr__(self) -> str:
        return (f"<TracedModel {type(self.model).__name__} backend={self.backend} "
                f"values={len(self.order)} prediction={self.prediction!r}>")

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.graph.nodes[self.canonical(name)]["shape"]

    def canonical(self, name: str) -> str:
        """The public name for ``name`` or one of its aliases; KeyError when unknown."""
        if name in self.nodes:
            return name
        return self.aliases[name]


@contextlib.contextmanager
def evaluation(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the duration; the model's own modes are restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes.items():
            m.training = training


def _as_inputs(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise TraceError("example_inputs must be a tensor or a non-empty tuple of tensors, got "
                         f"{type(example_inputs).__name__}")
    return inputs


def trace(model: nn.Module, example_inputs: Any, adapter: Adapter | None = None) -> TracedModel:
    """Trace ``model`` on ``example_inputs`` (a tensor or a tuple of tensors). See module doc.

    ``adapter`` tells the tracer about leaf modules, tracing arguments and the prediction; without
    one the generic rules apply (``adapter_for(model, manager)`` finds a registered one).
    """
    if not isinstance(model, nn.Module):
        raise TraceError(f"trace() needs an nn.Module, got {type(model).__name__}")
    inputs = _as_inputs(example_inputs)
    adapter = adapter or GenericAdapter()
    shapes = tuple(tuple(t.shape) for t in inputs)
    concrete = adapter.concrete_args(model)
    # The eval-mode graph, by either backend (code reading self.training is decided while tracing;
    # hkt_core.trace.modes traces the train graph where a model is run in training mode).
    gm, backend = _graph_module(model, inputs, adapter, concrete)
    if backend == "export":   # exported at a batch of at least 2: the record says what it traced
        from .export import unspecialised_inputs

        inputs = unspecialised_inputs(inputs)
        shapes = tuple(tuple(t.shape) for t in inputs)
    with evaluation(model):
        if backend == "fx":
            try:
                output = _ShapeProp(gm).run(*inputs)
            except TraceError:
                _check_inputs(model, inputs, concrete, shapes)
                raise
        else:
            output = _check_inputs(model, inputs, concrete, shapes)
    flat_out = pytree.tree_leaves(output)
    try:
        pred_value = adapter.prediction(output)
    except TypeError as exc:
        raise TraceError(str(exc)) from exc
    pred_index = next((i for i, v in enumerate(flat_out) if v is pred_value), None)
    if pred_index is None:
        raise TraceError(f"{type(adapter).__name__}.prediction returned a tensor that is not one of "
                         f"{type(model).__name__}'s outputs")
    traced = _build(model, gm, backend, shapes, pred_index, inputs)
    traced.adapter = adapter
    return traced


def _check_inputs(model: nn.Module, inputs, concrete, shapes) -> Any:
    """Run the model itself (already in eval mode); a failure means it rejects these inputs."""
    try:
        return model(*inputs, **(concrete or {}))
    except Exception as exc:
        raise TraceError(f"{type(model).__name__} rejected example input shape(s) "
                         f"{', '.join(str(list(s)) for s in shapes)}: {type(exc).__name__}: {exc}") from exc


def _graph_module(model, inputs, adapter, concrete) -> tuple[fx.GraphModule, str]:
    """The eval-mode graph (:mod:`hkt_core.trace.modes`): fx first, then ``torch.export``."""
    try:
        with in_mode(model, False):
            return fx_trace(model, adapter, concrete), "fx"
    except Exception as fx_exc:  # control flow on proxies, unsupported Python: try torch.export
        fx_error = f"{type(fx_exc).__name__}: {str(fx_exc).splitlines()[0] if str(fx_exc) else ''}"
        log.debug("torch.fx could not trace %s (%s); trying torch.export", type(model).__name__, fx_error)
    from .export import export_trace

    try:
        with evaluation(model):
            return export_trace(model, inputs, kwargs=concrete), "export"
    except Exception as exp_exc:
        with evaluation(model):
            _check_inputs(model, inputs, concrete, tuple(tuple(t.shape) for t in inputs))
        text = str(exp_exc).strip().splitlines()
        at = next((i for i in range(len(text) - 1, -1, -1) if 'File "' in text[i]), None)
        where = "" if at is None else text[at].strip()
        if at is not None and at + 1 < len(text) and text[at + 1].strip():
            where += f": {text[at + 1].strip()}"
        raise TraceError(
            f"cannot trace {type(model).__name__}: torch.fx failed ({fx_error}) and torch.export "
            f"failed ({type(exp_exc).__name__}: {text[0] if text else ''}{'; at ' + where if where else ''}). "
            f"Fix: make the sub-module holding that construct a leaf module (Adapter.leaf_modules), "
            f"fix tracing arguments with Adapter.concrete_args, or register an adapter whose "
            f"declared_blocks names the blocks.") from exp_exc


class _ShapeProp(fx.Interpreter):
    """Run the graph once, storing each value's shape (``node.meta["hkt"]["shape"]``)."""

    def run_node(self, n: fx.Node) -> Any:
        try:
            value = super().run_node(n)
        except Exception as exc:
            raise TraceError(f"running traced node {n.format_node()} failed: {exc}") from exc
        if isinstance(value, torch.Tensor):
            n.meta.setdefault("hkt", {}).update(shape=tuple(value.shape), dtype=value.dtype)
        else:  # a size, a flag, or a tuple of tensors (split, chunk): floating when it holds float tensors
            leaves = [v for v in pytree.tree_leaves(value) if isinstance(v, torch.Tensor)]
            n.meta.setdefault("hkt", {}).update(floating=any(v.is_floating_point() for v in leaves),
                                                scalar=not leaves)
        return value


def _shape_of(node: fx.Node) -> tuple[int, ...] | None:
    """A value's shape: the one a run recorded (:class:`_ShapeProp`), else the traced one when all
    its sizes are known (None for a data-dependent size that no run recorded)."""
    shape = node.meta.get("hkt", {}).get("shape")
    if shape is not None:
        return tuple(shape)
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return _concrete_shape(val.shape)
    return None


def _concrete_shape(shape: Any) -> tuple[int, ...] | None:
    """``shape`` as integers: a backed symbolic size (the batch of a dynamic export) at the size it
    was traced with; None when a size is data-dependent (an unbacked ``u0``: how many positions a
    mask selects), which has no value until the graph runs."""
    if has_free_unbacked_symbols(tuple(shape)):
        return None
    try:
        return tuple(int(d) for d in shape)
    except (TypeError, GuardOnDataDependentSymNode):  # a symbolic size without a value
        return None


def _data_dependent(node: fx.Node) -> bool:
    """True when the traced value (a tensor, a size, or a tuple of them) has a data-dependent size:
    an unbacked symbol of ``torch.export`` (``u0``: ``nonzero``, a boolean mask's selection, ``item``)."""
    val = node.meta.get("val")
    if val is None:
        return False
    leaves = [v for v in pytree.tree_leaves(val) if isinstance(v, (torch.Tensor, torch.SymInt, torch.SymBool))]
    return any(has_free_unbacked_symbols(tuple(v.shape) if isinstance(v, torch.Tensor) else v) for v in leaves)


def _record_data_dependent_shapes(gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...] | None,
                                  model_name: str) -> set[fx.Node]:
    """The nodes of an export graph whose size depends on the inputs' values; when there are any,
    the graph runs once on ``inputs`` (no autograd) so that every value's shape is the one seen on
    the example inputs. A graph that cannot run keeps those sizes unknown (None), said in the log."""
    dependent = {n for n in gm.graph.nodes if n.op not in _SKIPPED_OPS and _data_dependent(n)}
    if dependent and inputs is not None:
        try:
            with torch.no_grad():
                _ShapeProp(gm).run(*inputs)
        except TraceError as exc:
            log.warning("the export graph of %s did not run on its example inputs (%s): its %d "
                        "data-dependent size(s) stay unknown", model_name, exc, len(dependent))
    return dependent


def _target_name(node: fx.Node) -> str:
    target = node.target
    return getattr(target, "__name__", None) or str(target)


def _get_attr_params(gm: fx.GraphModule, node: fx.Node) -> list[torch.Tensor]:
    out = []
    for arg in node.all_input_nodes:
        if arg.op == "get_attr":
            try:
                value = gm.get_parameter(str(arg.target))
            except AttributeError:
                continue
            out.append(value)
    return out


def _flops(gm: fx.GraphModule, node: fx.Node, shape: tuple[int, ...] | None) -> float:
    """Per-sample FLOP estimate of one node (see module docstring)."""
    if not shape:
        return 0.0
    out_numel = math.prod(shape[1:]) if len(shape) > 1 else 1
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        if isinstance(mod, nn.modules.conv._ConvNd):
            return 2.0 * out_numel * mod.weight.numel() / mod.weight.shape[0 if not isinstance(mod, nn.modules.conv._ConvTransposeNd) else 1]
        if isinstance(mod, nn.Linear):
            return 2.0 * out_numel * mod.in_features
        # An opaque (leaf) block: each parameter is used about once per output position, as in a
        # convolution (positions: spatial extent of a map, T of (B, T, D) tokens, 1 for a vector).
        n_params = sum(p.numel() for p in mod.parameters())
        return max(float(out_numel), 2.0 * n_params * _positions(mod, shape))
    if node.op in ("call_function", "call_method"):
        name = _target_name(node).lower()
        weights = _get_attr_params(gm, node)
        if "conv" in name and weights:
            w = weights[0]
            per_out = w.numel() / w.shape[0] if "transpose" not in name else w.numel() / w.shape[1]
            return 2.0 * out_numel * per_out
        if ("linear" in name or "addmm" in name) and weights:
            w = weights[0]
            return 2.0 * out_numel * (w.shape[-1] if w.dim() == 2 else 1)
        if any(k in name for k in ("matmul", "bmm", "mm", "einsum", "scaled_dot_product")):
            first = node.all_input_nodes[0] if node.all_input_nodes else None
            inner = _shape_of(first)[-1] if first is not None and _shape_of(first) else 1
            return 2.0 * out_numel * inner
        return float(out_numel)
    return 0.0


_ONE_D = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d, nn.MaxPool1d, nn.AvgPool1d,
          nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)


def _positions(mod: nn.Module, shape: tuple[int, ...]) -> int:
    """Output positions of an opaque block: the spatial extent of a map (``shape[2:]``); for a
    rank-3 value, ``L`` of a 1-D map (B, C, L) when the block is built of 1-D convolutions, norms or
    pools, else ``T`` of (B, T, D) tokens; 1 for a vector."""
    if len(shape) >= 4:
        return math.prod(shape[2:])
    if len(shape) == 3:
        return shape[2] if any(isinstance(m, _ONE_D) for m in mod.modules()) else shape[1]
    return 1


def _params(gm: fx.GraphModule, node: fx.Node) -> int:
    if node.op == "call_module":
        return sum(p.numel() for p in gm.get_submodule(str(node.target)).parameters())
    return sum(p.numel() for p in _get_attr_params(gm, node))


def _innermost_module(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str]:
    if node.op == "call_module":
        return str(node.target), type(gm.get_submodule(str(node.target))).__name__
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, kind = list(stack.values())[-1][:2]
        kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
        return str(path), kind.rsplit(".", 1)[-1]
    return "", ""


def _build(model: nn.Module, gm: fx.GraphModule, backend: str, shapes, pred_index: int,
           inputs: tuple[torch.Tensor, ...] | None = None) -> TracedModel:
    dependent = _record_data_dependent_shapes(gm, inputs, type(model).__name__) if backend == "export" else set()
    table = name_table(gm)
    names = table.names
    graph = nx.DiGraph()
    nodes: dict[str, fx.Node] = {}
    aliases: dict[str, str] = {}
    order: list[str] = []
    inputs: list[str] = []
    out_node = None
    for node in gm.graph.nodes:
        if node.op == "output":
            out_node = node
        if node.op in _SKIPPED_OPS or (node.op == "call_module" and str(node.target) == "_guards_fn"):
            continue
        name = names[node]
        nodes[name] = node
        seen = _shape_of(node)
        module, module_type = _innermost_module(gm, node)
        graph.add_node(name, op=node.op, target=_target_name(node), module=module, module_type=module_type,
                       shape=None if node in dependent else seen, example_shape=seen,
                       data_dependent=node in dependent, params=_params(gm, node), flops=_flops(gm, node, seen),
                       index=len(order), fx_node=node, module_output=node in table.module_outputs)
        for arg in node.all_input_nodes:
            if arg in names and names[arg] in nodes:
                graph.add_edge(names[arg], name)
        order.append(name)
        if node.op == "placeholder":
            inputs.append(name)
        for alias in table.aliases(node):
            aliases.setdefault(alias, name)
    if out_node is None:
        raise TraceError(f"traced graph of {type(model).__name__} has no output")
    out_leaves = [n for n in pytree.tree_leaves(out_node.args[0])]
    outputs = tuple(names.get(n, "") if isinstance(n, fx.Node) else "" for n in out_leaves)
    if pred_index >= len(out_leaves) or not isinstance(out_leaves[pred_index], fx.Node):
        raise TraceError(f"cannot locate the prediction of {type(model).__name__} in its traced graph "
                         f"(output {pred_index} of {len(out_leaves)}); declare it with Adapter.prediction")
    prediction = names[out_leaves[pred_index]]
    return TracedModel(model=model, gm=gm, backend=backend, graph=graph, nodes=nodes, names=names,
                       aliases=aliases, input_shapes=tuple(shapes), inputs=tuple(inputs),
                       outputs=tuple(o for o in outputs if o), prediction=prediction, order=tuple(order),
                       table=table)
