"""The lockstep forward of a training step recorded as one ``torch.fx`` graph (for ``torch.compile``).

The Family runs its streams with a small interpreter (:mod:`hkt_core.lockstep.streams`) that reads
``fx.Node`` objects at every step, which ``torch.compile`` cannot trace through. This module runs
the very same schedule once with a recording interpreter: every node a stream executes and every
operation of a mixing point becomes a node of one new graph, whose inputs are the batch and whose
outputs are the three streams' outputs and the feature loss. The result is an ordinary
:class:`torch.fx.GraphModule` over the Family's own modules (no parameter is copied), which
``torch.compile`` turns into one compiled step.

A ``torch.export`` graph is recorded the same way: its ``get_attr`` nodes (parameters, buffers)
become reads of the Family's own tensors (the inherited stream's scratch buffers become constants
of the recorded graph), its input guards (``_guards_fn``) join the root with the other modules
outside the Family, and its flat outputs are rebuilt into what the model returns (:class:`Unflatten`).

The graph is the training-mode forward. What training mode changes is reproduced: the inherited
stream runs the child's buffer-holding modules on scratch twins (the same parameters, buffers of
their own), so the child's BatchNorm statistics follow the native stream only, as in the
interpreter. The parent's ``torch.no_grad`` regions are not recorded: they only cover values that
depend on nothing trainable, for which autograd records nothing either way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

#: ``mix(k, read_parent, read_child, feature_losses) -> (new_child | None, new_parent | None)``
RecordMix = Callable[[int, Callable, Callable, list], tuple[Any, Any]]


def scratch_twin(module: nn.Module) -> nn.Module:
    """A copy of ``module`` sharing its parameters, with buffers of its own (recursively)."""
    twin = copy.copy(module)
    twin._parameters = dict(module._parameters)
    twin._buffers = {k: (None if v is None else v.detach().clone()) for k, v in module._buffers.items()}
    twin._modules = {k: (None if m is None else scratch_twin(m)) for k, m in module._modules.items()}
    return twin


class _Recorder(fx.Tracer):
    """Every module called on recorded values is one ``call_module`` node (a leaf).

    A leaf's result is a single recorded value, but the code around it may look at its structure
    (a mixture returns a tensor or a ``MixOutput(value, loss)``). ``outputs`` holds what each
    module returned in a real forward; a recorded result is given the same structure, its tensors
    taken out of the recorded value by index and its constants (None) kept.
    """

    def __init__(self, outputs: dict[int, Any]) -> None:
        super().__init__()
        self.outputs = outputs

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True

    def call_module(self, m: nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        proxy = super().call_module(m, forward, args, kwargs)
        return _like(proxy, self.outputs[id(m)]) if id(m) in self.outputs else proxy


def _like(proxy: Any, real: Any) -> Any:
    """``proxy`` given the structure of ``real`` (tuples, named tuples, lists; tensors stay recorded)."""
    if isinstance(real, (tuple, list)):
        items = [None if r is None else _like(proxy[i], r) for i, r in enumerate(real)]
        if hasattr(real, "_fields"):
            return type(real)(*items)
        return type(real)(items)
    return proxy


def observed_outputs(modules: Sequence[nn.Module], run: Callable[[], Any]) -> dict[int, Any]:
    """What each of ``modules`` returned (its last call) while ``run()`` ran."""
    seen: dict[int, Any] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.__setitem__(id(mod), out)) for m in modules]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


class _RecordingGraph:
    """Stands in for a :class:`~hkt_core.lockstep.interpreter.LockstepGraph` while recording:
    :meth:`run` appends each node to the new graph instead of executing it."""

    def __init__(self, graph: Any, recorder: _Recorder, twins: dict[int, str], scratch_stream: set[fx.Node],
                 own: dict[int, str] | None = None, unflatten: str | None = None) -> None:
        self._graph, self._recorder, self._twins, self._scratch_stream = graph, recorder, twins, scratch_stream
        # modules of the graph outside the Family's tree (a folded parent's; an export graph's guards)
        self._own = own or {}
        self._unflatten = unflatten   # the root's module that rebuilds an export graph's outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._graph, name)

    def run(self, nodes: Sequence[fx.Node], env: dict[fx.Node, Any], read: Callable[[fx.Node], Any],
            protected: set[fx.Node], free: Any = None, grad: Any = None) -> None:
        # The streams hand the inherited stream its own ``protected`` set: its modules get twins.
        twins = self._twins if protected is self._scratch_stream else {}
        for node in nodes:
            env[node] = self._record(node, read, protected, twins)

    def _record(self, node: fx.Node, read: Callable[[fx.Node], Any], protected: set[fx.Node],
                twins: dict[int, str]) -> Any:
        g, rec = self._graph, self._recorder
        args = fx.node.map_arg(node.args, read)
        kwargs = fx.node.map_arg(node.kwargs, read)
        if node.op == "call_module":
            if node in g.inplace_input and g.inplace_input[node] in protected:
                args = (args[0].clone(), *args[1:])
            module = g.modules[node]
            path = twins.get(id(module)) or self._own.get(id(module)) or rec.path_of_module(module)
            return rec.create_proxy("call_module", path, args, kwargs)
        if node.op in ("call_function", "call_method"):
            return rec.create_proxy(node.op, node.target, args, kwargs)
        if node.op == "get_attr":
            # An export graph reads its parameters and buffers through get_attr: the recorder gives
            # a tensor a get_attr node of its own (its path in the Family, or a constant of the
            # recorded graph: a scratch buffer of the inherited stream), used as a recorded value.
            value = rec.create_arg(g.fetch_attr(str(node.target)))
            return fx.Proxy(value, rec) if isinstance(value, fx.Node) else value
        if node.op == "output":   # an export graph's output node holds the flat leaves
            if self._unflatten is None:
                return args[0]
            return rec.create_proxy("call_module", self._unflatten, tuple(args[0]), {})
        raise TypeError(f"{g.label}: cannot record node {node.format_node()}")


class Unflatten(nn.Module):
    """The outputs of an export graph (its output node's flat leaves) in the structure its model
    returns (``ModelOutput`` of a transformers model): what :class:`LockstepGraph` runs to."""

    def __init__(self, spec: pytree.TreeSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, *leaves: Any) -> Any:
        return pytree.tree_unflatten(list(leaves), self.spec)


class LockstepStep(nn.Module):
    """The recorded graph's root: the Family, the inherited stream's scratch twins, the graphs'
    modules outside the Family (``parent_own``, ``child_own``) and their outputs' ``unflatten``."""

    def __init__(self, family: nn.Module) -> None:
        super().__init__()
        self.family = family
        self.scratch = nn.ModuleList()
        self.parent_own = nn.ModuleList()
        self.child_own = nn.ModuleList()
        self.unflatten = nn.ModuleDict()


def _root_with_inputs(family: nn.Module, count: int, body: Callable[[tuple], Any]) -> LockstepStep:
    """A :class:`LockstepStep` whose ``forward`` takes ``count`` positional inputs (fx reads the signature)."""
    names = ", ".join(f"input_{i}" for i in range(count))
    namespace: dict[str, Any] = {}
    exec(f"def forward(self, {names}):\n    return self._body(({names}{',' if count == 1 else ''}))", namespace)
    cls = type("LockstepStep", (LockstepStep,), {"forward": namespace["forward"]})
    root = cls(family)
    object.__setattr__(root, "_body", body)
    return root


def record_lockstep(family: nn.Module, streams: Any, inputs: int, mix: RecordMix,
                    outputs: dict[int, Any] | None = None) -> fx.GraphModule:
    """One graph of the training-mode forward of ``streams`` (a ``LockstepStreams``) on ``inputs`` inputs.

    ``mix`` is the Family's mixing at a point, called with recorded values; ``outputs`` what the
    modules it calls returned in a real forward (:func:`observed_outputs`), when some return more
    than a tensor. The graph returns ``(native, inherited, parent, feature_loss)``: the raw outputs
    of the three streams, and the mean of the mixtures' feature losses (None when there is none).
    """
    owners = {id(owner) for owner, _ in streams.inherited_buffers}
    twins: dict[int, str] = {}
    twin_modules: list[nn.Module] = []
    for node in streams.cg.sorted(streams.child_downstream):
        module = streams.cg.modules.get(node)
        if module is not None and id(module) not in twins and any(id(m) in owners for m in module.modules()):
            twin_modules.append(scratch_twin(module))
            twins[id(module)] = f"scratch.{len(twin_modules) - 1}"
    # The graphs' own modules join the root: the parent's BatchNorms folded into copies
    # (hkt_core.lockstep.fold), an export graph's input guards (``_guards_fn``).
    in_family = {id(m) for m in family.modules()}
    own: dict[str, dict[int, str]] = {"parent": {}, "child": {}}
    own_modules: dict[str, list[nn.Module]] = {"parent": [], "child": []}
    for side, graph in (("parent", streams.pg), ("child", streams.cg)):
        for module in graph.modules.values():
            if id(module) not in in_family and id(module) not in own[side]:
                own_modules[side].append(module)
                own[side][id(module)] = f"{side}_own.{len(own_modules[side]) - 1}"
    unflatten = {side: Unflatten(graph.out_spec) for side, graph in (("parent", streams.pg), ("child", streams.cg))
                 if getattr(graph, "out_spec", None) is not None}
    recorder = _Recorder(outputs or {})

    def body(values: tuple) -> Any:
        feature_losses: list[Any] = []
        recording = copy.copy(streams)
        recording.pg = _RecordingGraph(streams.pg, recorder, {}, set(), own["parent"],
                                       "unflatten.parent" if "parent" in unflatten else None)
        recording.cg = _RecordingGraph(streams.cg, recorder, twins, streams.inherited_protected, own["child"],
                                       "unflatten.child" if "child" in unflatten else None)
        native, inherited, parent = recording.run(values, lambda k, rp, rc: mix(k, rp, rc, feature_losses), True)
        feature_loss = torch.stack(feature_losses).mean() if feature_losses else None
        return native, inherited, parent, feature_loss

    root = _root_with_inputs(family, inputs, body)
    root.scratch.extend(twin_modules)
    root.parent_own.extend(own_modules["parent"])
    root.child_own.extend(own_modules["child"])
    root.unflatten.update(unflatten)
    graph = recorder.trace(root)
    return fx.GraphModule(root, graph, class_name="LockstepStep")


def record_step(family: nn.Module, streams: Any, points: nn.Module, inputs: Sequence[torch.Tensor],
                mix: RecordMix) -> fx.GraphModule:
    """:meth:`hkt_core.Family.record_step`: what the ETM ``points`` return, seen in one eval-mode run
    of ``family`` on ``inputs`` without autograd (modes restored after), then the recorded step."""
    modes = [(m, m.training) for m in family.modules()]
    family.eval()
    try:
        with torch.no_grad():
            outputs = observed_outputs(list(points.modules()), lambda: family._call_impl(*inputs))
    finally:
        for m, mode in modes:
            m.training = mode
    return record_lockstep(family, streams, len(inputs), mix, outputs)
