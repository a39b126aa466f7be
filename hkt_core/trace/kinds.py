"""What a value of a network is: a map, a sequence of tokens or a vector, and whether two can mix.

Every batched tensor value gets a kind (one vocabulary for cards, alignment records and code):

- ``map``: ``(B, C, *spatial)``: channels first, one or more spatial axes (a 1-D signal is
  ``(B, C, L)``);
- ``tokens``: ``(B, N, D)``: N tokens of D features, optionally with a class token (prepended,
  position 0) and a grid (the patches of a ViT came from an ``h x w`` map);
- ``vector``: ``(B, C)``.

Rank 2 is a vector and rank >= 4 a map. A rank-3 value is read from the graph, per value: the
layout flows forward from the operations that produce it (Linear, LayerNorm, attention,
Embedding on the last axis make tokens; Conv1d, BatchNorm1d, 1-D pooling make maps; a transpose
of the last two axes flips it; flattening a map's spatial axes keeps it a map and remembers the
grid; concatenating a single learned token in front of tokens adds a class token). A value with no
producing evidence (an input, an unsqueeze) takes it from what consumes it, and is a map when
nothing says otherwise. A stated layout (``layouts = {"encoder.out" = "tokens"}`` in a card's
``[alignment]``) overrides the inference and flows on like any evidence; ``"tokens+cls"`` and a
grid (``"tokens 4x4"``, ``"tokens+cls 4x4"``) may be stated too.

:func:`mixing_pair_problem` is the one rule that says whether a parent value and a child value
can be a mixing point; :func:`hkt_core.align.align` and :class:`hkt_core.family.Family` both use it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs
import torch
from torch import fx, nn

from ..config import DIRECTIONS, canonical_direction
from ..errors import AlignmentError

KINDS = ("map", "tokens", "vector")
#: Older spellings of a rank-3 layout, still accepted where a layout is stated.
LEGACY_LAYOUTS = {"channels_first": "map", "channels_last": "tokens"}

_TOKEN_MODULES = tuple(getattr(nn, name) for name in (
    "Linear", "LayerNorm", "RMSNorm", "MultiheadAttention", "Embedding", "TransformerEncoderLayer",
    "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder") if hasattr(nn, name))
_MAP_MODULES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
                nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
                nn.modules.instancenorm._InstanceNorm, nn.Upsample)
_TOKEN_FUNCTIONS = ("linear", "layer_norm", "rms_norm", "scaled_dot_product_attention",
                    "multi_head_attention_forward", "embedding")
_MAP_FUNCTIONS = ("conv1d", "conv_transpose1d", "batch_norm", "instance_norm", "group_norm", "max_pool1d",
                  "avg_pool1d", "adaptive_avg_pool1d", "adaptive_max_pool1d", "lp_pool1d")
_MOVES = ("transpose", "permute", "movedim", "swapaxes", "swapdims")
_FLATTENS = ("flatten", "view", "reshape")
_BROADCASTS = ("add", "mul", "sub", "truediv", "div", "__add__", "__mul__")
_STATED_RE = re.compile(r"^(map|tokens|vector)(\+cls)?(?:\s+(\d+(?:x\d+)*))?$")


@attrs.frozen
class ValueKind:
    """The kind of one batched value and what a transfer needs to know about it."""

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    #: the value's shape, batch first, as the model holds it
    shape: tuple[int, ...] = attrs.field(converter=lambda s: tuple(int(d) for d in s))
    #: tokens only: position 0 is a class token
    class_token: bool = False
    #: tokens only: the spatial grid the (non-class) tokens came from, e.g. (4, 4)
    grid: tuple[int, ...] | None = attrs.field(default=None,
                                                converter=lambda g: None if g is None else tuple(int(d) for d in g))

    @property
    def width(self) -> int:
        """Channels of a map or a vector, features of a token."""
        return self.shape[2] if self.kind == "tokens" else self.shape[1]

    @property
    def positions(self) -> int:
        """Spatial positions of a map, tokens without the class token, 1 for a vector."""
        if self.kind == "map":
            return math.prod(self.shape[2:])
        if self.kind == "tokens":
            return self.shape[1] - int(self.class_token)
        return 1

    @property
    def resolution(self) -> tuple[int, ...]:
        """The spatial extent: a map's axes, a token grid (or the token count), () for a vector."""
        if self.kind == "map":
            return tuple(self.shape[2:])
        if self.kind == "tokens":
            return self.grid if self.grid else (self.positions,)
        return ()

    @property
    def spatial_dims(self) -> int:
        return len(self.resolution)

    @property
    def channel_first_shape(self) -> tuple[int, ...]:
        """The shape without the batch as the ETM operators see it: tokens become ``(D, N)``."""
        if self.kind == "tokens":
            return (self.shape[2], self.shape[1])
        return tuple(self.shape[1:])

    def with_shape(self, shape: Iterable[int]) -> "ValueKind":
        return attrs.evolve(self, shape=tuple(shape))

    def describe(self) -> str:
        """Short text: ``map 8x8``, ``tokens 1+16 (4x4)``, ``vector``."""
        if self.kind == "map":
            return f"map {'x'.join(map(str, self.resolution))}"
        if self.kind == "tokens":
            count = f"1+{self.positions}" if self.class_token else f"{self.positions}"
            grid = f" ({'x'.join(map(str, self.grid))})" if self.grid else ""
            return f"tokens {count}{grid}"
        return "vector"


def kind_from_shape(shape: Iterable[int]) -> ValueKind:
    """The kind a shape has without a graph to read: rank 3 is taken as a map."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise AlignmentError(f"a value of shape {list(shape)} has no kind: a mixing point is a batched tensor "
                             f"(B, C), (B, N, D) or (B, C, *spatial)")
    return ValueKind("vector" if len(shape) == 2 else "map", shape)


def parse_stated(text: str, where: str = "layout") -> tuple[str, bool, tuple[int, ...] | None]:
    """``"tokens"``, ``"tokens+cls 4x4"``, ``"map"`` (or the older ``channels_last``/``channels_first``)
    -> (kind, class token, grid)."""
    if not isinstance(text, str):
        raise AlignmentError(f"{where} = {text!r} must be a string: map, tokens, tokens+cls, tokens 4x4")
    text = LEGACY_LAYOUTS.get(text.strip(), text.strip())
    m = _STATED_RE.match(text)
    if not m or (m.group(1) != "tokens" and (m.group(2) or m.group(3))):
        raise AlignmentError(f"{where} = {text!r} is not a layout; allowed: map, tokens, tokens+cls, a token "
                             f"grid such as 'tokens 4x4' or 'tokens+cls 4x4', vector")
    grid = tuple(int(d) for d in m.group(3).split("x")) if m.group(3) else None
    return m.group(1), bool(m.group(2)), grid


# -- inference on a traced graph -------------------------------------------------------------------

def _target_name(node: fx.Node) -> str:
    """The operation's name; an aten overload of a ``torch.export`` graph (``aten.layer_norm.default``)
    reads as its packet's name (``layer_norm``), so aten graphs follow the same rules as fx graphs."""
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return target.overloadpacket.__name__.lower()
    return (getattr(target, "__name__", None) or str(target)).lower()


def _module_kind(module: nn.Module) -> str | None:
    for m in reversed(list(module.modules())):
        if isinstance(m, _TOKEN_MODULES):
            return "tokens"
        if isinstance(m, _MAP_MODULES):
            return "map"
    return None


def _own_evidence(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """The kind an operation makes of its rank-3 output by itself."""
    if node.op == "call_module":
        try:
            return _module_kind(gm.get_submodule(str(node.target)))
        except AttributeError:
            return None
    if node.op in ("call_function", "call_method"):
        name = _target_name(node)
        if name in _TOKEN_FUNCTIONS:
            return "tokens"
        if name in _MAP_FUNCTIONS:
            return "map"
    return None


def _arg(node: fx.Node, index: int, key: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(key, default)


def _swaps_last_two(node: fx.Node, rank: int) -> bool:
    """A transpose / permute / movedim of a rank-3 value that swaps axes 1 and 2 (batch kept)."""
    name = _target_name(node)
    if name not in _MOVES or rank != 3:
        return False
    rest = [a for a in node.args[1:]] + [v for k, v in node.kwargs.items() if k not in ("input",)]
    if name == "permute":
        dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
        return [int(d) % 3 for d in dims] == [0, 2, 1] if all(isinstance(d, int) for d in dims) else False
    if len(rest) < 2 or not all(isinstance(d, int) for d in rest[:2]):
        return False
    return {int(rest[0]) % 3, int(rest[1]) % 3} == {1, 2}


def infer_kinds(gm: fx.GraphModule, shape_of: Callable[[fx.Node], tuple[int, ...] | None],
                stated: Mapping[fx.Node, str] | None = None) -> dict[fx.Node, ValueKind]:
    """The kind of every batched tensor value of ``gm`` (rules in the module docstring).

    ``shape_of`` gives a node's shape (batch first) or None; ``stated`` maps nodes to stated
    layouts (see :func:`parse_stated`), which override the inference.
    """
    stated = dict(stated or {})
    nodes = [n for n in gm.graph.nodes if n.op not in ("output", "get_attr")]
    shapes = {n: shape_of(n) for n in nodes}
    info: dict[fx.Node, ValueKind | None] = {}

    def rank3_inputs(n: fx.Node) -> list[fx.Node]:
        return [a for a in n.all_input_nodes if shapes.get(a) is not None and len(shapes[a]) == 3]

    stated_kinds: dict[fx.Node, ValueKind] = {}
    for n, text in stated.items():
        shape = shapes.get(n)
        kind, cls, grid = parse_stated(text, f"layout of {n.name!r}")
        if shape is None or (kind == "vector") != (len(shape) == 2) or (kind == "tokens" and len(shape) != 3):
            raise AlignmentError(f"the stated layout {text!r} does not fit the value's shape "
                                 f"{list(shape) if shape else shape}: tokens are (B, N, D), vectors (B, C), "
                                 f"maps (B, C, *spatial)")
        stated_kinds[n] = ValueKind(kind, shape, cls, grid)

    # rank-4 values that are tokens split into attention heads, (B, N, H, d) or (B, H, N, d), with the
    # kind of the tokens they were split from: merging the heads back gives those tokens again
    heads: dict[fx.Node, ValueKind] = {}
    # rank-4 values that are tokens laid on their grid channels last, (B, h, w, D) (a Swin stage's
    # windows and patch merging): flattening h and w gives tokens on an h x w grid
    laid: set[fx.Node] = set()

    def forward_pass() -> None:
        for n in nodes:
            shape = shapes[n]
            if shape is None or len(shape) < 2:
                continue
            if n in stated_kinds:
                info[n] = stated_kinds[n]
            elif len(shape) != 3:
                info[n] = ValueKind("vector" if len(shape) == 2 else "map", shape)
                if len(shape) == 4:
                    src = _split_heads(gm, n, shape, shapes, info, heads)
                    if src is not None:
                        heads[n] = src
                    elif _on_token_grid(n, shape, shapes, info, laid):
                        laid.add(n)
            else:
                found = _forward_rule(gm, n, shape, shapes, info, rank3_inputs(n), heads, laid)
                info[n] = found if found is not None else info.get(n)

    # 1. evidence flows forward from the operations that produce values; 2. values still unknown
    # take their kind from what reads them; 3. a second forward pass carries class tokens and grids
    # through the values step 2 settled.
    forward_pass()
    for n in reversed(nodes):
        if n in info and info[n] is None:
            info[n] = _from_consumers(gm, n, shapes, info)
    forward_pass()
    return {n: v for n, v in info.items() if v is not None}


def _richest(kinds: Iterable[ValueKind]) -> ValueKind | None:
    """Of token kinds with one token count, the one that knows most: a class token and a grid are
    carried by the residual stream, not by a branch that lost them (an attention output)."""
    kinds = list(kinds)
    return max(kinds, key=lambda k: (k.class_token, k.grid is not None)) if kinds else None


def _split_heads(gm: fx.GraphModule, n: fx.Node, shape, shapes, info, heads) -> ValueKind | None:
    """The tokens a rank-4 value was split from into attention heads, or None (a real map).

    A view of tokens (B, N, D) as (B, N, H, D/H) splits them; moving axes, attention, scaling and
    the like keep a split value split; a map-making operation (a convolution) does not."""
    name = _target_name(n)
    first = n.all_input_nodes[0] if n.all_input_nodes else None
    if first is None or _own_evidence(gm, n) == "map":
        return None
    fshape = shapes.get(first)
    src = info.get(first)
    if (name in _FLATTENS + ("unflatten",) and fshape is not None and len(fshape) == 3 and src is not None
            and src.kind == "tokens" and tuple(shape[:2]) == tuple(fshape[:2]) and shape[2] * shape[3] == fshape[2]):
        return src
    for a in n.all_input_nodes:
        if a in heads:
            return heads[a]
    return None


def _on_token_grid(n: fx.Node, shape, shapes, info, laid) -> bool:
    """True for tokens (B, N, D) viewed as (B, h, w, D) with h * w = N, and for what a value so laid
    becomes without moving its axes (slicing the grid, padding, rolling, joining features)."""
    first = n.all_input_nodes[0] if n.all_input_nodes else None
    if first is None:
        return False
    fshape = shapes.get(first)
    name = _target_name(n)
    if name in _FLATTENS + ("unflatten",) and fshape is not None and len(fshape) == 3:
        src = info.get(first)
        return (src is not None and src.kind == "tokens" and not src.class_token and shape[3] == fshape[2]
                and shape[1] * shape[2] == fshape[1])
    return name not in _MOVES and any(a in laid for a in n.all_input_nodes)


def _forward_rule(gm: fx.GraphModule, n: fx.Node, shape: tuple[int, ...], shapes, info,
                  inputs3: list[fx.Node], heads: Mapping[fx.Node, ValueKind] | None = None,
                  laid: set[fx.Node] | None = None) -> ValueKind | None:
    same_tokens = [a for a in inputs3 if info.get(a) is not None and shapes[a][1] == shape[1]]
    heads = heads or {}
    laid = laid or set()

    def carried(kind: str) -> ValueKind:
        """``kind`` with the class token and grid of an input with the same token count."""
        src = _richest(info[a] for a in same_tokens if info[a].kind == "tokens")
        if kind == "tokens" and src is not None:
            return ValueKind("tokens", shape, src.class_token, src.grid)
        return ValueKind(kind, shape)

    own = _own_evidence(gm, n)
    if own is not None:
        return carried(own)
    first = n.all_input_nodes[0] if n.all_input_nodes else None
    first_shape = shapes.get(first) if first is not None else None
    if first is not None and _swaps_last_two(n, len(shape)) and info.get(first) is not None:
        src = info[first]
        if src.kind == "map":
            return ValueKind("tokens", shape, False, src.grid)
        return ValueKind("map", shape, False, None if src.class_token else src.grid)
    name = _target_name(n)
    if name in _FLATTENS and first in heads and first_shape is not None and len(first_shape) == 4:
        src = heads[first]   # attention heads merged back into tokens
        if shape[1] == src.shape[1]:
            return ValueKind("tokens", shape, src.class_token, src.grid)
        return ValueKind("tokens", shape)
    if (name in _FLATTENS and first in laid and first_shape is not None and len(first_shape) == 4
            and shape[1] == first_shape[1] * first_shape[2] and shape[2] == first_shape[3]):
        return ValueKind("tokens", shape, False, tuple(first_shape[1:3]))   # a token grid flattened back
    if (name in _FLATTENS and first_shape is not None and len(first_shape) >= 4 and shape[1] == first_shape[1]
            and shape[2] == math.prod(first_shape[2:])):
        return ValueKind("map", shape, False, tuple(first_shape[2:]))
    if name == "cat":
        return _concatenated(n, shape, shapes, info)
    if (n.target is operator.getitem or name == "getitem") and first is not None and info.get(first) is not None:
        src = info[first]
        if src.kind == "tokens" and src.class_token and shape[1] == first_shape[1] - 1 and shape[2] == first_shape[2]:
            return ValueKind("tokens", shape, False, src.grid)
        if src.kind == "tokens" and tuple(first_shape) == tuple(shape):
            return src.with_shape(shape)
    same = [info[a] for a in inputs3 if info.get(a) is not None and tuple(shapes[a]) == tuple(shape)]
    if same and all(k.kind == "tokens" for k in same):
        return _richest(same).with_shape(shape)   # a residual add keeps the stream's class token and grid
    if same:
        return same[0].with_shape(shape)
    return None


def _concatenated(n: fx.Node, shape, shapes, info) -> ValueKind | None:
    parts = _arg(n, 0, "tensors", ())
    dim = _arg(n, 1, "dim", 0)
    if not isinstance(parts, (list, tuple)) or not all(isinstance(p, fx.Node) for p in parts):
        return None
    known = [info.get(p) for p in parts]
    if isinstance(dim, int) and dim % 3 == 1 and len(parts) == 2:
        first, second = known
        sizes = [shapes[p][1] if shapes.get(p) else None for p in parts]
        if sizes[0] == 1 and second is not None and second.kind == "tokens" and not second.class_token:
            return ValueKind("tokens", shape, True, second.grid)
        if sizes[0] == 1 and second is not None and second.kind == "map":
            return None
    kinds = {k.kind for k in known if k is not None}
    if len(kinds) == 1:
        return ValueKind(kinds.pop(), shape)
    return None


def _from_consumers(gm: fx.GraphModule, n: fx.Node, shapes, info) -> ValueKind:
    shape = shapes[n]
    for user in n.users:
        if user.op == "output":
            continue
        own = _own_evidence(gm, user)
        if own is not None and user.all_input_nodes and user.all_input_nodes[0] is n:
            return ValueKind(own, shape)
        got = info.get(user)
        if got is None or shapes.get(user) is None:
            continue
        if _swaps_last_two(user, 3):
            return ValueKind("map" if got.kind == "tokens" else "tokens", shape)
        if _target_name(user) == "cat" and got.kind == "tokens" and len(shapes[user]) == 3 \
                and shapes[user][2] == shape[2]:   # joined with other tokens (a class token, say)
            return ValueKind("tokens", shape)
        if tuple(shapes[user]) == tuple(shape) and got.kind in ("map", "tokens"):
            return ValueKind(got.kind, shape)
        if (_target_name(user) in _BROADCASTS and len(shapes[user]) == 3 and got.kind == "tokens"
                and shapes[user][1] == shape[1]):   # (B, N, 1) * (N, D): features broadcast per token
            return ValueKind("tokens", shape)
    return ValueKind("map", shape)


def stated_nodes(layouts: Mapping[str, str] | None, resolve: Callable[[str], fx.Node | None],
                 label: str) -> dict[fx.Node, str]:
    """Stated layouts keyed by node: ``"name"`` for both models or ``"parent:name"`` / ``"child:name"``
    for one (``label`` is this model's side). Unknown names are left to the other side's lookup,
    but a name meant for this side (prefixed) must exist."""
    out: dict[fx.Node, str] = {}
    for key, value in (layouts or {}).items():
        if not isinstance(key, str):
            raise AlignmentError(f"layouts keys are node names, got {key!r}")
        side, sep, name = key.partition(":")
        if sep and side in ("parent", "child"):
            if side != label:
                continue
            node = resolve(name)
            if node is None:
                raise AlignmentError(f"layouts[{key!r}]: the {label} has no node {name!r}")
        else:
            node = resolve(key)
            if node is None:
                continue
        parse_stated(value, f"layouts[{key!r}]")
        out[node] = value
    return out


def donor_kind(donor, kinds: Sequence[ValueKind]) -> ValueKind:
    """The kind of an extractor's output (channel-first ``donor``) read from the values it combined."""
    shape = (1, *donor.shape[1:])
    if donor.dim() == 2:
        return ValueKind("vector", shape)
    first = kinds[0]
    if first.kind == "tokens":   # back to (B, N, D)
        return first.with_shape((1, shape[2], shape[1]))
    return first.with_shape(shape)


# -- the validity of a mixing pair -----------------------------------------------------------------

def transfer_problem(source: ValueKind, target: ValueKind) -> str | None:
    """Why no transfer maps ``source`` onto ``target`` (None when one does)."""
    if source.kind == "vector" or target.kind == "vector":
        return None
    if source.kind == "map" and target.kind == "map":
        if source.spatial_dims != target.spatial_dims:
            return (f"a {source.spatial_dims}-D map and a {target.spatial_dims}-D map have no transfer between "
                    f"them")
        return None
    if source.kind == "tokens" and target.kind == "map" and target.spatial_dims > 1:
        if source.grid is None or len(source.grid) != target.spatial_dims:
            return (f"tokens without a {target.spatial_dims}-D grid cannot become a {target.spatial_dims}-D map "
                    f"(state the grid, e.g. layouts = {{\"name\" = \"tokens 4x4\"}})")
    return None


def mixing_pair_problem(parent: ValueKind, child: ValueKind, direction: str = "both") -> str | None:
    """Why ``parent`` and ``child`` cannot be a mixing point (None when they can).

    A mixing point transfers the parent's value onto the child's (``to_child``), the child's onto
    the parent's (``to_parent``), or both (``backbone`` and ``head`` are read as the former two). Any two kinds mix when transfers exist: vectors with
    everything (pooling, broadcast), maps with maps of the same number of spatial axes, tokens
    with tokens and with 1-D maps, tokens on a grid with maps of the grid's rank. This is the one
    rule :func:`hkt_core.align.align` and :class:`hkt_core.family.Family` apply.
    """
    direction = canonical_direction(direction)
    if direction not in DIRECTIONS:
        raise AlignmentError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    checks = []
    if direction in ("both", "to_child"):
        checks.append(("parent -> child", parent, child))
    if direction in ("both", "to_parent"):
        checks.append(("child -> parent", child, parent))
    for label, source, target in checks:
        problem = transfer_problem(source, target)
        if problem:
            return (f"{parent.describe()} (parent) and {child.describe()} (child) cannot mix: {label}: {problem}; "
                    f"align other nodes or pool both to vectors")
    return None


def traced_kinds(traced, layouts: Mapping[str, str] | None = None, label: str = "") -> dict[str, ValueKind]:
    """Kinds of every value of a :class:`hkt_core.trace.graph.TracedModel`, by public name."""
    def resolve(name: str):
        try:
            return traced.nodes[traced.canonical(name)]
        except KeyError:
            return None

    stated = stated_nodes(layouts, resolve, label)
    found = infer_kinds(traced.gm, lambda n: traced.graph.nodes[traced.names[n]]["shape"]
                        if n in traced.names and traced.names[n] in traced.graph else None, stated)
    return {traced.names[n]: k for n, k in found.items() if n in traced.names}


__all__ = ["DIRECTIONS", "KINDS", "donor_kind", "LEGACY_LAYOUTS", "ValueKind", "infer_kinds", "kind_from_shape",
           "mixing_pair_problem", "parse_stated", "stated_nodes", "traced_kinds", "transfer_problem"]
