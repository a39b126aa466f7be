"""The three streams of a lockstep forward: which nodes each computes when, and running them.

- ``native``: the child alone, no mixing. Runs first, in full; values the inherited stream reads
  are kept.
- ``inherited``: the child with parent->child mixing. Only the nodes downstream of a mixed child
  node are recomputed; everything else is the native stream's value, shared.
- ``parent``: the parent with child->parent mixing. Nodes no child signal reaches run under
  ``torch.no_grad``; downstream of a mixed parent node gradients flow through the frozen parent.

The child's normalisation buffers are updated by the native stream only: the inherited stream
runs its modules, and the functional operators that read buffers through ``get_attr``, on scratch
copies of those buffers. The graphs are the models in the mode they run in
(:mod:`hkt_core.trace.modes`): a Family keeps one schedule per mode of the child. What happens at a mixing point is the
caller's business (:meth:`LockstepStreams.run` takes a ``mix`` callback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from torch import fx, nn

from ..errors import AlignmentError
from .interpreter import LockstepGraph, release_plan

#: ``mix(k, read_parent, read_child) -> (new_child_value | None, new_parent_value | None)``.
MixFn = Callable[[int, Callable[[fx.Node], Any], Callable[[fx.Node], Any]], tuple[Any, Any]]

_MISSING = object()


class StreamPoint(Protocol):
    """What the streams need to know of a mixing point."""

    index: int
    parent_nodes: tuple[fx.Node, ...]
    child_nodes: tuple[fx.Node, ...]
    parent_receiver: fx.Node
    child_receiver: fx.Node


def _point_batches(graph: LockstepGraph, points: Sequence[StreamPoint], subset: set[fx.Node] | None,
                   point_nodes: Callable[[StreamPoint], tuple], receivers: set[fx.Node],
                   receiver_of: Callable[[StreamPoint], fx.Node]) -> tuple[list[list[fx.Node]], list[fx.Node]]:
    """The nodes to run before each point (restricted to ``subset``) and the tail after the last."""
    done: set[fx.Node] = set()
    plan = []
    for p in points:
        need = graph.ancestors(point_nodes(p))
        if subset is not None:
            need &= subset
        batch = graph.sorted(need - done)
        done |= set(batch)
        plan.append(batch)
        r = receiver_of(p)
        if r in receivers:
            early = [u for u in r.users if u in done]
            if early:
                raise AlignmentError(
                    f"the alignment is not order-preserving in the {graph.label}: mixing point {p.index} "
                    f"replaces {graph.names[r]!r}, but {graph.names[early[0]]!r}, which reads it, is needed "
                    f"by an earlier mixing point")
    rest = set(graph.nodes) if subset is None else set(subset)
    return plan, graph.sorted(rest - done)


def _buffers_of(modules: Sequence[nn.Module]) -> list[tuple[nn.Module, str]]:
    """Every buffer (owner, name) of ``modules`` and their sub-modules, once each."""
    seen: set[tuple[int, str]] = set()
    out: list[tuple[nn.Module, str]] = []
    for module in modules:
        for owner in module.modules():
            for name, buf in owner._buffers.items():
                if buf is not None and (id(owner), name) not in seen:
                    seen.add((id(owner), name))
                    out.append((owner, name))
    return out


class LockstepStreams:
    """The schedule of the three streams over a parent and a child graph, and its execution.

    ``child_mixed[k]`` / ``parent_mixed[k]`` say whether point ``k`` replaces the child's / the
    parent's receiver value.
    """

    def __init__(self, pg: LockstepGraph, cg: LockstepGraph, points: Sequence[StreamPoint],
                 child_mixed: Sequence[bool], parent_mixed: Sequence[bool]) -> None:
        self.pg, self.cg, self.points = pg, cg, list(points)
        child_receivers = {p.child_receiver for p, on in zip(points, child_mixed) if on}
        parent_receivers = {p.parent_receiver for p, on in zip(points, parent_mixed) if on}
        self.child_downstream = cg.descendants(child_receivers)
        # Buffers that recomputed nodes read through get_attr (a functional batch norm: export
        # graphs, modules fx traced through) are read again by the inherited stream, from the
        # scratch copies swapped in for its run, so that only the native stream moves the child's state.
        state_reads = {a for n in self.child_downstream for a in n.all_input_nodes if cg.state_of(a) is not None}
        self.child_downstream |= state_reads
        self.parent_downstream = pg.descendants(parent_receivers)
        child_point_nodes = {n for p in points for n in p.child_nodes}
        parent_point_nodes = {n for p in points for n in p.parent_nodes}

        # Native: every node, in program order; values the inherited stream reads are kept.
        self.native_nodes = cg.sorted(cg.nodes)
        keep = {n for n in cg.nodes if n not in self.child_downstream
                and any(u in self.child_downstream for u in n.users)} | child_point_nodes
        self.native_protected = keep
        self.native_free = release_plan(self.native_nodes, keep)
        self.inherited_protected = {n for n in cg.nodes if n not in self.child_downstream} | child_point_nodes
        self.parent_protected = parent_point_nodes

        self.inherited_steps, self.inherited_tail = _point_batches(
            cg, points, self.child_downstream, lambda p: p.child_nodes, child_receivers, lambda p: p.child_receiver)
        self.parent_steps, self.parent_tail = _point_batches(
            pg, points, None, lambda p: p.parent_nodes, parent_receivers, lambda p: p.parent_receiver)
        # Release each stream's values after their last use (holding a whole frozen parent's
        # activations would cost memory and fresh allocations on every step).
        self.inherited_free = release_plan([n for batch in self.inherited_steps for n in batch]
                                           + self.inherited_tail, child_point_nodes)
        self.parent_free = release_plan([n for batch in self.parent_steps for n in batch] + self.parent_tail,
                                        parent_point_nodes)
        # Child buffers the inherited stream may update (BatchNorm running stats): (owner, name).
        self.inherited_buffers = _buffers_of([cg.modules[n] for n in self.child_downstream if n in cg.modules])
        known = {(id(owner), name) for owner, name in self.inherited_buffers}
        for owner, name in (cg.state_of(a) for a in cg.sorted(state_reads)):
            if (id(owner), name) not in known:
                known.add((id(owner), name))
                self.inherited_buffers.append((owner, name))

    def _run_parent(self, nodes: Sequence[fx.Node], env: dict[fx.Node, Any]) -> None:
        self.pg.run(nodes, env, env.__getitem__, self.parent_protected, free=self.parent_free,
                    grad=self.parent_downstream)

    def run(self, inputs: Sequence[Any], mix: MixFn, child_training: bool) -> tuple[Any, Any, Any]:
        """The outputs of the native, inherited and parent streams on ``inputs``."""
        pg, cg = self.pg, self.cg
        # 1. The parent up to the first mixing point: no child signal reaches it, so it runs
        #    without autograd, and first, while no child activations are held.
        parent: dict[fx.Node, Any] = {}
        pg.bind_inputs(parent, inputs)
        self._run_parent(self.parent_steps[0], parent)

        # 2. Native child stream: the child alone.
        native: dict[fx.Node, Any] = {}
        cg.bind_inputs(native, inputs)
        cg.run(self.native_nodes, native, native.__getitem__, self.native_protected, free=self.native_free)

        # 3. Lockstep: inherited child stream and parent stream, mixing at each point.
        inherited: dict[fx.Node, Any] = {}

        def read_c(node: fx.Node) -> Any:
            value = inherited.get(node, _MISSING)
            return native[node] if value is _MISSING else value

        # The inherited stream updates scratch copies of the child's buffers, swapped in for its run
        # and dropped after (restoring in place would invalidate tensors autograd saved).
        saved = None
        if child_training and self.inherited_buffers:
            saved = [owner._buffers[name] for owner, name in self.inherited_buffers]
            for (owner, name), buf in zip(self.inherited_buffers, saved):
                owner._buffers[name] = buf.clone()
        try:
            for k, (p, c_steps, p_steps) in enumerate(zip(self.points, self.inherited_steps, self.parent_steps)):
                if k > 0:
                    self._run_parent(p_steps, parent)
                cg.run(c_steps, inherited, read_c, self.inherited_protected, free=self.inherited_free)
                new_c, new_p = mix(k, parent.__getitem__, read_c)
                if new_c is not None:
                    inherited[p.child_receiver] = new_c
                if new_p is not None:
                    parent[p.parent_receiver] = new_p
            cg.run(self.inherited_tail, inherited, read_c, self.inherited_protected, free=self.inherited_free)
            self._run_parent(self.parent_tail, parent)
        finally:
            if saved is not None:
                for (owner, name), buf in zip(self.inherited_buffers, saved):
                    owner._buffers[name] = buf
        return native[cg.output], read_c(cg.output), parent[pg.output]


__all__ = ["LockstepStreams", "MixFn", "StreamPoint"]
