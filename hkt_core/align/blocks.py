"""Block discovery: where in a traced network work naturally hands off from one block to the next.

The candidate rule (docs/alignment.md, section 2; it names no family and no module name). When the
model has at least two block outputs on its main path (:func:`block_boundaries`: outputs of
composite modules repeated among siblings or across the model, or members of a sequence of them,
that every floating-point path to the prediction passes through), the candidates are the block
outputs of its **trunk** plus the features the head reads: plain layers (one path through them)
before, between and after the blocks that branch are the front end, transitions and tail; a block
nested in a block of the same resolution that computes its own output after it lies inside it; a
block whose call returns a tuple hands on the value it computes last that the rest of the network
reads. Stage ends and the head's input are marked (``stage_end``, ``head_input``), each gets its
block position over the trunk (``position``: (i + 1) / B for the i-th of B block outputs, 1 for the
head's input), the depth the placement uses (``place``), and its trunk level (``tier`` of
``tiers``: the runs of block outputs of one resolution, the head's features standing for the last),
which constrains the chain (:mod:`hkt_core.align.solve`). Values inside a block are never
candidates.

Otherwise (plain CNNs, MLPs, opaque stages) a value is a candidate block boundary when it

1. is a tensor whose first dimension is the batch, of rank >= 2, computed from an input and used
   (directly or not) by the prediction, and is not an input or the prediction itself; and
2. is at least one of
   - the output of a **top-level or second-level module** (``layer2``, ``layer2.3``),
   - a **resolution or width change**: its shape (batch aside) differs from its first input's,
   - a **cut point**: every path from the inputs to the prediction passes through it (a dominator
     of the prediction in the value graph), so all information flows through that one tensor.

An adapter's ``declared_blocks(model)`` replaces the rule: exactly those values are candidates.

Each candidate gets the features the alignment score uses: ``depth`` (relative depth: cumulative
FLOPs of the value's ancestors over those of the prediction; parameters when the network has no
FLOPs; topological position when neither), ``kind`` (``map``, ``tokens`` or ``vector``, read per
value from the graph by :mod:`hkt_core.trace.kinds`; ``value_kind`` has the class token and grid of
tokens), ``resolution`` (the spatial extent of a map, the grid or count of tokens, () for
vectors), ``width`` (channels or features), ``level`` (0 for a top-level module output, 1 for
second-level, 2 otherwise), ``cut`` and ``change``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import networkx as nx
import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import nn

from ..errors import AlignmentError
from ..trace.kinds import ValueKind, kind_from_shape, traced_kinds
from ..trace.graph import TracedModel


@attrs.frozen
class Block:
    """A candidate block boundary and its features (see module docstring)."""

    name: str
    index: int
    shape: tuple[int, ...]
    depth: float
    kind: str
    resolution: tuple[int, ...]
    width: int
    level: int
    cut: bool
    change: bool
    module_output: bool
    value_kind: ValueKind
    #: the output of a repeated block (module-tree repetition, on the main path)
    block_output: bool = False
    #: the last block before a change of resolution or width (or before the head)
    stage_end: bool = False
    #: the pooled features (or final norm) the head reads
    head_input: bool = False
    #: block position: (i + 1) / B for the i-th of the model's B block outputs, 1 for the head's
    #: input; None where the model has no repeated blocks
    position: float | None = None
    #: "i/B" of a block output, for the reason text
    position_text: str = ""
    #: the trunk level (1-based): the run of block outputs of one resolution the value lies in (the
    #: features the head reads stand for the last); 0 where the model has no repeated blocks
    tier: int = 0
    #: how many levels the model's trunk has (0 without repeated blocks)
    tiers: int = 0

    @property
    def place(self) -> float:
        """The relative depth the placement uses: the block position when the model has repeated
        blocks (each block counts as one, the way a reader splits a network into halves or thirds),
        else the FLOP depth."""
        return self.depth if self.position is None else self.position

    @property
    def strength(self) -> float:
        """How natural a hand-off point this is: share of the three boundary signs it shows."""
        return (float(self.cut) + float(self.level <= 1 and self.module_output) + float(self.change)) / 3.0


@attrs.define(eq=False)
class BlockGraph:
    """Reachability, cut points and relative depth of one traced model, plus its candidates."""

    traced: TracedModel
    ancestors: dict[str, int]          # name -> bitset of ancestor indices (itself included)
    cut_points: frozenset[str]
    depth_weights: np.ndarray | None   # per-value weights of relative depth (FLOPs or parameters)
    prediction_mask: np.ndarray        # values the prediction depends on
    kinds: dict[str, ValueKind]        # name -> kind of every batched value
    layouts: dict[str, str]            # the layouts stated for this analysis (both sides' entries)
    candidates: tuple[Block, ...]
    prediction: Block
    #: what the block discovery left out and why (a front end, values inside a block), for the reasons
    notes: tuple[str, ...] = ()

    @property
    def token_model(self) -> bool:
        """True when some value of the model is a sequence of tokens."""
        return any(k.kind == "tokens" for k in self.kinds.values())

    def is_ancestor(self, a: str, b: str) -> bool:
        """True when value ``a`` is ``b`` or is used, directly or not, to compute ``b``."""
        return bool(self.ancestors[b] >> self.traced.graph.nodes[a]["index"] & 1)

    def depth(self, name: str) -> float:
        """Relative depth in [0, 1]: the share of the prediction's cost spent before ``name``."""
        n = len(self.prediction_mask)
        mask = _bits_to_mask(self.ancestors[name], n) & self.prediction_mask
        if self.depth_weights is None:
            value, total = float(mask.sum()), float(self.prediction_mask.sum())
        else:
            value, total = self.depth_weights[mask].sum(), self.depth_weights[self.prediction_mask].sum()
        return float(min(1.0, value / total)) if total > 0 else 0.0

    def block(self, name: str) -> Block:
        """Features of any tensor value (candidate or not), for manual alignments."""
        return _make_block(self, name)

    def near(self, name: str, n: int = 6) -> list[str]:
        """Candidate names nearest ``name`` in topological order."""
        if name not in self.traced.graph:
            return [b.name for b in self.candidates[:n]]
        idx = self.traced.graph.nodes[name]["index"]
        ranked = sorted(self.candidates, key=lambda b: (abs(b.index - idx), b.index))
        return sorted((b.name for b in ranked[:n]), key=lambda s: self.traced.graph.nodes[s]["index"])


def _module_level(name: str) -> int:
    path = name.split("#", 1)[0]
    return min(path.count("."), 2)


def _bits_to_mask(bits: int, n: int) -> np.ndarray:
    raw = bits.to_bytes((n + 7) // 8, "little")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:n].astype(bool)


def _make_block(bg: BlockGraph, name: str) -> Block:
    g = bg.traced.graph
    data = g.nodes[name]
    shape = data["shape"]
    if shape is None or len(shape) < 2:
        raise AlignmentError(f"{name!r} is not a batched tensor (shape {shape}); pick a tensor value "
                             f"such as {', '.join(bg.near(name))}")
    kind = bg.kinds.get(name) or kind_from_shape(shape)
    first = next((p for p in sorted(g.predecessors(name), key=lambda p: g.nodes[p]["index"])
                  if g.nodes[p]["shape"] is not None), None)
    change = first is not None and tuple(g.nodes[first]["shape"][1:]) != tuple(shape[1:])
    return Block(name=name, index=data["index"], shape=tuple(shape), depth=bg.depth(name),
                 kind=kind.kind, resolution=kind.resolution, width=kind.width,
                 level=_module_level(name) if data["module_output"] else 2, cut=name in bg.cut_points,
                 change=change, module_output=bool(data["module_output"]), value_kind=kind)


_VIEWS = ("view", "reshape", "flatten", "contiguous", "clone", "alias", "slice", "expand")


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def repeated_blocks(model) -> list[str]:
    """Module paths of blocks: composite modules (modules that have children of their own) that
    share their class with a sibling (a ``ModuleList`` of layers, a ``Sequential`` of residual
    blocks) or, for a class of its own (not a generic container), with another module anywhere in
    the model (a stage of one layer, its class repeated in the other stages), and the composite
    members of a ``Sequential`` or ``ModuleList`` holding at least two of them (a stage of blocks
    of different classes). Blocks nested inside another block are kept too (ResNet stages and the
    blocks in them); the parts of a block are not (below)."""
    composite = [(path, mod) for path, mod in model.named_modules() if any(True for _ in mod.children())]
    classes: dict[type, int] = {}
    for _, mod in composite:
        if not isinstance(mod, _CONTAINERS):
            classes[type(mod)] = classes.get(type(mod), 0) + 1
    out = []
    for path, mod in model.named_modules():
        kids = [(n, c) for n, c in mod.named_children() if any(True for _ in c.children())]
        counts: dict[type, int] = {}
        for _, c in kids:
            counts[type(c)] = counts.get(type(c), 0) + 1
        sequence = isinstance(mod, (nn.Sequential, nn.ModuleList)) and len(kids) >= 2
        for n, c in kids:
            if counts[type(c)] >= 2 or sequence or classes.get(type(c), 0) >= 2:
                out.append(f"{path}.{n}" if path else n)
    # the parts of a block are not blocks: children of a block that is not a container (the
    # expand, depthwise and project convolution layers of an inverted residual, a layer's attention)
    repeated = set(out)
    containers = {p for p, m in model.named_modules() if isinstance(m, (nn.Sequential, nn.ModuleList))}
    return [p for p in out if not (p.rpartition(".")[0] in repeated and p.rpartition(".")[0] not in containers)]


@attrs.frozen
class Boundaries:
    """What :func:`block_boundaries` finds: the trunk's block outputs in forward order, its stage
    ends, the features the head reads, each value's trunk level, and what was left out and why."""

    outputs: list[str]
    ends: set[str]
    head: str | None
    tiers: dict[str, int]
    count: int
    notes: tuple[str, ...] = ()

    def __iter__(self):  # (outputs, ends, head), as before
        return iter((self.outputs, self.ends, self.head))


def _members(traced: TracedModel) -> dict[str, list[str]]:
    """Module path -> the values computed inside it (its own output included), in forward order."""
    g = traced.graph
    inside: dict[str, list[str]] = {}
    for name in traced.order:
        module = str(g.nodes[name].get("module") or "").split("@", 1)[0]
        parts = module.split(".") if module else []
        for k in range(1, len(parts) + 1):
            inside.setdefault(".".join(parts[:k]), []).append(name)
    return inside


def _handed_on(traced: TracedModel, path: str, members: dict[str, list[str]]) -> str | None:
    """The value a module hands to the rest of the network when no value carries its name (its call
    returns a tuple): the last batched tensor computed inside it that a value outside it reads."""
    g = traced.graph
    own = members.get(path, ())
    within = set(own)
    handed = [n for n in own if g.nodes[n]["shape"] is not None and len(g.nodes[n]["shape"]) >= 2
              and any(s not in within for s in g.successors(n))]
    return handed[-1] if handed else None


def _block_value(traced: TracedModel, path: str, members: dict[str, list[str]]) -> str | None:
    try:
        return traced.canonical(path)
    except KeyError:
        pass
    try:  # a list of modules is never called: it computes nothing of its own
        if isinstance(traced.model.get_submodule(path), (nn.ModuleList, nn.ModuleDict)):
            return None
    except AttributeError:
        return None
    return _handed_on(traced, path, members)


def _branches(traced: TracedModel, name: str, paths: Sequence[str], members: dict[str, list[str]],
              fed: set[str]) -> bool:
    """True when the block computing ``name`` has more than one path through it: some value computed
    inside it reads two floating-point values fed by the inputs' data (a residual add, attention, a
    concatenation of parallel branches, a gate). A plain layer (convolution, norm, activation, each
    reading only the one before) does not."""
    g = traced.graph
    index = g.nodes[name]["index"]
    for path in paths:
        for n in members.get(path, ()):
            if g.nodes[n]["index"] > index:
                continue
            data = [p for p in g.predecessors(n) if p in fed and _is_float(g.nodes[p]["fx_node"])
                    and g.nodes[p]["shape"] is not None]
            if len(set(data)) >= 2:
                return True
    return False


def _positions_of(traced: TracedModel, name: str, kinds: Mapping[str, ValueKind] | None) -> int:
    shape = traced.graph.nodes[name]["shape"]
    kind = (kinds or {}).get(name) or kind_from_shape(shape)
    return kind.positions


def block_boundaries(traced: TracedModel, cut: set[str],
                     kinds: Mapping[str, ValueKind] | None = None) -> Boundaries | None:
    """The trunk's block outputs, its stage ends and the head's input, or None without blocks.

    Block outputs are the values of blocks (:func:`repeated_blocks`) that every path from the inputs
    to the prediction passes through (cut points): the residual stream after the add or the norm
    that ends a block, never a branch inside it (a block whose call returns a tuple hands on the
    value it computes last that the rest of the network reads). Three rules keep them to the trunk:

    - **inside a block**: a block output nested in another block whose own output has as many
      positions and is computed after it (a norm, a projection, a fold: not simply its last nested
      block's output) lies inside that block and is dropped (the transformer layers inside a
      MobileViT block, the parts of a block a stage holds alone);
    - **front end and tail**: when some block branches (a residual connection, attention, parallel
      paths), the plain blocks before the first branching one (a convolutional stem, an audio
      feature extractor) and after the last (a 1x1 convolution before the pool) are not the trunk;
    - depth is measured over what remains: block positions count the trunk's blocks only.

    A stage end is a block output whose next block output differs in shape (resolution or width),
    and the last block output. The trunk's **levels** are the runs of block outputs with one number
    of positions (a map's extent, tokens without the class token); the features the head reads stand
    for the last. The head's input is the value the last parameterised operation before the
    prediction reads, followed back through views, dropout, activations and class-token selection to
    a module with parameters (pooler, final norm) or a reduction (global pooling)."""
    g = traced.graph
    cut = set(cut) | _float_cut_points(traced)
    members = _members(traced)
    outputs: list[str] = []
    paths: dict[str, list[str]] = {}   # block output -> the blocks whose output it is
    values: dict[str, str] = {}        # block path -> its value (cut point or not)
    for path in repeated_blocks(traced.model):
        name = _block_value(traced, path, members)
        if name is None or name == traced.prediction:
            continue
        values[path] = name
        paths.setdefault(name, []).append(path)
        if name in cut and name not in outputs:
            outputs.append(name)
    if len(outputs) < 2:
        return None
    outputs.sort(key=lambda n: g.nodes[n]["index"])
    notes: list[str] = []

    # the trunk: blocks with more than one path through them; plain layers are the front end,
    # transitions between stages or the tail, unless no block branches (a chain of plain layers)
    fed = _data_of_inputs(traced)
    branching = [_branches(traced, n, paths[n], members, fed) for n in outputs]
    if any(branching) and sum(branching) >= 2:
        first, last = branching.index(True), len(branching) - 1 - branching[::-1].index(True)
        between = sum(1 for k in range(first, last + 1) if not branching[k])
        for count, what in ((first, "before the trunk (a front end)"), (between, "between its stages"),
                            (len(outputs) - 1 - last, "after the trunk")):
            if count:
                notes.append(f"{count} plain layer(s) {what} left out")
        outputs = [n for n, b in zip(outputs, branching) if b]

    # inside a block: nested block outputs of a block that computes its own output after them, with
    # as many positions
    dropped = set()
    for name in outputs:
        for path in paths[name]:
            for outer, value in values.items():
                if value == name or not path.startswith(outer + "."):
                    continue
                nested = {values[q] for q in values if q.startswith(outer + ".")}
                if value in nested or g.nodes[value]["shape"] is None:
                    continue  # the outer block hands on its last nested block's output: a stage
                if _positions_of(traced, value, kinds) == _positions_of(traced, name, kinds):
                    dropped.add(name)
    if dropped and len(outputs) - len(dropped) >= 2:
        outputs = [n for n in outputs if n not in dropped]
        notes.append(f"{len(dropped)} block output(s) inside a block of the same resolution left out")

    def _holds_blocks(path: str) -> bool:  # a stage of its own: it holds block outputs
        return any(values[q] in kept for q in values if q.startswith(path + "."))

    kept = set(outputs)
    head = _head_input(traced, outputs[-1])
    ends = set()
    for a, b in zip(outputs, outputs[1:]):
        if tuple(g.nodes[a]["shape"][1:]) != tuple(g.nodes[b]["shape"][1:]):
            # a stage that ends by downsampling (a Swin stage's patch merging) ends at its own output,
            # unless that output is the end of another stage nested in it (a list of stages)
            holds = any((a.startswith(p + ".") or a in members.get(p, ()))
                        and not any(values[q] == b and _holds_blocks(q) for q in values if q.startswith(p + "."))
                        for p in paths.get(b, ()))
            ends.add(b if holds else a)
    ends.add(outputs[-1])
    tiers: dict[str, int] = {}
    level, previous = 0, None
    for name in outputs:
        here = _positions_of(traced, name, kinds)
        if here != previous:
            level, previous = level + 1, here
        tiers[name] = level
    if head is not None:
        tiers.setdefault(head, level)
    return Boundaries(outputs=outputs, ends=ends, head=head, tiers=tiers, count=level, notes=tuple(notes))


def _is_float(node) -> bool:
    """True for a floating-point tensor or a tuple holding one (split, chunk); False for integer and
    boolean tensors and for sizes (``sym_size`` of an export graph, ``size()`` of an fx graph)."""
    meta = node.meta.get("hkt", {})
    if "dtype" in meta:
        return meta["dtype"].is_floating_point
    if "floating" in meta:
        return bool(meta["floating"])
    val = node.meta.get("val")
    if val is None:
        return True  # nothing recorded: keep the value on the floating-point graph
    return any(isinstance(v, torch.Tensor) and v.is_floating_point() for v in pytree.tree_leaves(val))


def _is_scalar(node) -> bool:
    """A size or another Python scalar (``sym_size`` of an export graph, ``size()`` of an fx graph)."""
    meta = node.meta.get("hkt", {})
    if "dtype" in meta:
        return False
    if "scalar" in meta:
        return bool(meta["scalar"])
    return isinstance(node.meta.get("val"), (int, float, bool, torch.SymInt, torch.SymFloat, torch.SymBool))


def _data_of_inputs(traced: TracedModel) -> set[str]:
    """Values computed from the inputs' data: sizes are not data, so what is made from them alone
    (positions, rotary tables, masks of a given length) is not fed by the inputs."""
    g = traced.graph
    fed: set[str] = set(traced.inputs)
    todo = list(traced.inputs)
    while todo:
        for succ in g.successors(todo.pop()):
            if succ not in fed and not _is_scalar(g.nodes[succ]["fx_node"]):
                fed.add(succ)
                todo.append(succ)
    return fed


def _float_cut_points(traced: TracedModel) -> set[str]:
    """Dominators of the prediction in the graph of floating-point values computed from the inputs'
    data: integer bookkeeping (attention masks, the position of the last real token) and values made
    from sizes alone (rotary position tables) do not bypass the layers."""
    g = traced.graph
    pred = traced.prediction
    fed = _data_of_inputs(traced)
    keep = {n for n in fed if _is_float(g.nodes[n]["fx_node"])}  # tuples (split, chunk) included
    if pred not in keep:
        return set()
    sub = nx.DiGraph()
    source = ("__source__",)
    sub.add_node(source)
    for n in keep:
        sub.add_node(n)
        preds = [p for p in g.predecessors(n) if p in fed]
        if g.nodes[n]["op"] == "placeholder" or (preds and not any(p in keep for p in preds)):
            sub.add_edge(source, n)  # where the data enters the floating-point graph
        for p in preds:
            if p in keep:
                sub.add_edge(p, n)
    idom = nx.immediate_dominators(sub, source)
    out, node = set(), pred
    while node != source and node in idom:
        out.add(node)
        if idom[node] == node:
            break
        node = idom[node]
    return out


def _module_has_params(traced: TracedModel, path: str) -> bool:
    try:
        return any(True for _ in traced.model.get_submodule(path).parameters())
    except AttributeError:
        return False


def _numel(shape) -> int:
    return int(np.prod(shape[1:])) if shape else 0


def _module_path(traced: TracedModel, name: str) -> str:
    return str(traced.graph.nodes[name].get("module") or "").split("@", 1)[0]


def _inside(path: str, module: str) -> bool:
    return bool(module) and (path == module or path.startswith(module + "."))


def _head_module(traced: TracedModel, op: str, last_block: str) -> str:
    """The outermost module around the head's parameterised operation ``op`` that holds no block
    output (``fc``, ``classifier``, a ``Sequential(Flatten, Linear)`` head), or '' for none."""
    path, block = _module_path(traced, op), _module_path(traced, last_block)
    parts = path.split(".") if path else []
    for k in range(1, len(parts) + 1):
        prefix = ".".join(parts[:k])
        if not _inside(block, prefix):
            return prefix
    return ""


#: operations the head's features are read back through: no-ops at inference, activations, and
#: class-token selection
_READ_THROUGH = ("dropout", "identity", "contiguous", "clone", "alias", "relu", "tanh", "gelu", "select",
                 "getitem", "squeeze")


def _head_input(traced: TracedModel, last_block: str) -> str | None:
    """The features the head reads: the value that enters the head module (the outermost module
    around the last parameterised operation before the prediction that holds no block), read back
    through dropout, activations, class-token selection and views that keep the shape, to a module
    with parameters (a pooler, a pre-classifier, a final norm), a global pooling, or the first
    value that reshapes (a flatten after a functional pooling: the head reads the flattened
    features). A head module that pools first (a classifier head holding its global pooling) reads
    the pooled features: the value nearest its Linear with as many elements as the pooling's output
    (the flattened pool), not the map that enters it. Operations are read by their target and
    module type (a dropout module is read through whatever its attribute is called)."""
    g = traced.graph
    node = traced.prediction
    # the last parameterised operation producing the prediction (through its largest input)
    while node is not None and not g.nodes[node]["params"]:
        preds = [p for p in g.predecessors(node) if g.nodes[p]["shape"] is not None]
        node = max(preds, key=lambda p: (_numel(g.nodes[p]["shape"]), g.nodes[p]["index"])) if preds else None
    if node is None:
        return None
    last_index = g.nodes[last_block]["index"]
    head = _head_module(traced, node, last_block)

    def main_input(name: str) -> str | None:
        preds = [p for p in g.predecessors(name) if g.nodes[p]["shape"] is not None and g.nodes[p]["op"] != "placeholder"]
        return max(preds, key=lambda p: g.nodes[p]["index"]) if preds else None

    def op(name: str) -> str:  # what a value's operation is: its target and its module's type
        return f"{g.nodes[name]['target']} {g.nodes[name].get('module_type') or ''}".lower()

    cur = main_input(node)
    inside: list[str] = []  # the head module's own values, from its Linear back to what enters it
    while cur is not None and g.nodes[cur]["index"] > last_index and _inside(_module_path(traced, cur), head):
        inside.append(cur)
        cur = main_input(cur)  # inside the head module: find what enters it
    for k, name in enumerate(inside):
        ins = [p for p in g.predecessors(name) if g.nodes[p]["shape"] is not None]
        if any(w in op(name) for w in ("pool", "mean")) or (
                len(ins) == 1 and _numel(g.nodes[ins[0]]["shape"]) > _numel(g.nodes[name]["shape"])
                and not any(w in op(name) for w in _READ_THROUGH)):
            # the head pools first (a classifier head holding its global pooling): it reads the
            # pooled features, flattened when it flattens them, not the map that enters it
            size = _numel(g.nodes[name]["shape"])
            same = [v for v in inside[:k + 1] if _numel(g.nodes[v]["shape"]) == size
                    and not any(w in op(v) for w in _READ_THROUGH)]
            return same[0] if same else name
    while cur is not None and g.nodes[cur]["index"] > last_index:
        data = g.nodes[cur]
        target = op(cur)
        ins = [p for p in g.predecessors(cur) if g.nodes[p]["shape"] is not None]
        if len(ins) == 1 and any(k in target for k in _VIEWS) and tuple(g.nodes[ins[0]]["shape"]) == tuple(data["shape"]):
            cur = ins[0]  # a view that keeps the shape (a module's output viewed): read through it
            continue
        paths = traced.table.module_outputs.get(data["fx_node"], ()) if traced.table is not None else ()
        if data["module_output"] and (data["params"] or any(_module_has_params(traced, p) for p in paths)):
            return cur
        if data["params"] or any(k in target for k in ("pool", "mean")):
            return cur  # a parameterised operation, a global pooling
        if len(ins) == 1 and _numel(g.nodes[ins[0]]["shape"]) > _numel(data["shape"]) and \
                not any(k in target for k in _READ_THROUGH):
            return cur  # a reduction: global pooling, mean over tokens
        if any(k in target for k in _READ_THROUGH) and ins:
            cur = max(ins, key=lambda p: g.nodes[p]["index"])
            continue
        return cur  # a reshape (flatten) after a pooling: the head reads this value
    return None


def discover(traced: TracedModel, declared: Sequence[str] | None = None,
             layouts: Mapping[str, str] | None = None, side: str = "") -> BlockGraph:
    """Analyse ``traced`` and list its candidate block boundaries (module docstring has the rule).

    ``layouts`` states the layout of values whose inference is wrong (:mod:`hkt_core.trace.kinds`);
    ``side`` (``parent`` / ``child``) selects the entries prefixed ``parent:`` / ``child:``.
    """
    g = traced.graph
    order = traced.order
    n = len(order)
    ancestors: dict[str, int] = {}
    for name in order:
        bits = 1 << g.nodes[name]["index"]
        for pred in g.predecessors(name):
            bits |= ancestors[pred]
        ancestors[name] = bits
    input_bits = 0
    for name in traced.inputs:
        input_bits |= 1 << g.nodes[name]["index"]
    pred_name = traced.prediction
    pred_anc = ancestors[pred_name]

    # cut points: dominators of the prediction from a virtual source feeding every input
    relevant = [name for name in order if pred_anc >> g.nodes[name]["index"] & 1 and ancestors[name] & input_bits]
    sub = nx.DiGraph()
    source = ("__source__",)
    sub.add_node(source)
    keep = set(relevant)
    for name in relevant:
        sub.add_node(name)
        for succ in g.successors(name):
            if succ in keep:
                sub.add_edge(name, succ)
    for name in traced.inputs:
        if name in keep:
            sub.add_edge(source, name)
    cut: set[str] = set()
    if pred_name in sub and sub.has_node(source):
        idom = nx.immediate_dominators(sub, source)
        node = pred_name
        while node != source and node in idom:
            cut.add(node)
            if idom[node] == node:
                break
            node = idom[node]

    flops = np.array([g.nodes[name]["flops"] for name in order], dtype=np.float64)
    params = np.array([g.nodes[name]["params"] for name in order], dtype=np.float64)
    pred_mask = _bits_to_mask(pred_anc, n)
    weights = flops if flops[pred_mask].sum() > 0 else params if params[pred_mask].sum() > 0 else None
    batch = traced.input_shapes[0][0]
    bg = BlockGraph(traced=traced, ancestors=ancestors, cut_points=frozenset(cut), depth_weights=weights,
                    prediction_mask=pred_mask,
                    kinds=traced_kinds(traced, layouts, side), layouts=dict(layouts or {}), candidates=(), prediction=None)  # type: ignore[arg-type]
    if declared is not None:
        names = []
        for raw in declared:
            try:
                names.append(traced.canonical(raw))
            except KeyError:
                from .resolve import unknown_node_error

                raise unknown_node_error(traced, raw, "declared block") from None
        chosen = [nm for nm in names if nm != pred_name]
    else:
        chosen = []
        for name in relevant:
            data = g.nodes[name]
            shape = data["shape"]
            if (name == pred_name or data["op"] == "placeholder" or shape is None or len(shape) < 2
                    or shape[0] != batch):
                continue
            chosen.append(name)
    blocks = [_make_block(bg, name) for name in chosen]
    if declared is None:
        boundaries = block_boundaries(traced, cut, bg.kinds)
        if boundaries:
            outputs, ends, head = boundaries
            bg.notes = boundaries.notes
            keep = set(outputs) | ({head} if head else set())
            rank = {name: i + 1 for i, name in enumerate(outputs)}
            blocks = [attrs.evolve(b, block_output=b.name in outputs, stage_end=b.name in ends,
                                   head_input=b.name == head,
                                   position=rank[b.name] / len(outputs) if b.name in rank else 1.0,
                                   position_text=f"{rank[b.name]}/{len(outputs)}" if b.name in rank else "head",
                                   tier=boundaries.tiers.get(b.name, 0), tiers=boundaries.count)
                      for b in blocks if b.name in keep]
        else:
            blocks = [b for b in blocks if b.cut or b.change or (b.module_output and b.level <= 1)]
    bg.candidates = tuple(sorted(blocks, key=lambda b: b.index))
    bg.prediction = _make_block(bg, pred_name)
    return bg
