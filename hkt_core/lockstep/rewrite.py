"""Graph rewriting: in-place operations become out-of-place, so streams can share values.

``y.relu_()`` becomes ``relu = y.relu()`` and every node after it that read ``y`` reads ``relu``
instead: the same values eager mode computes, without mutating a tensor another stream shares. A
module that works in place (``nn.ReLU(inplace=True)``) keeps its call (the interpreter hands it a
copy when its input must survive) and its later readers are rebound the same way. A module that
works in place on a view (torchvision's ``Dropout(inplace=True)`` after ``flatten``) gets a copy of
the view, which is exact when nothing reads the viewed value again (or the module is a dropout,
a no-op in the frozen parent's eval mode). Other in-place updates of a view of another value cannot
be expressed like this and are refused. An in-place update of the module's own state (a buffer
read by ``get_attr``, such as ``num_batches_tracked.add_(1)`` in a batch norm fx traced through)
stays in place: it is the model's state changing, as in eager mode.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from ..errors import TraceError

_INPLACE_OPERATORS = {
    operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
    operator.itruediv: operator.truediv, operator.ifloordiv: operator.floordiv, operator.imod: operator.mod,
    operator.ipow: operator.pow, operator.iand: operator.and_, operator.ior: operator.or_,
    operator.ixor: operator.xor, operator.ilshift: operator.lshift, operator.irshift: operator.rshift,
    operator.imatmul: operator.matmul,
}
_VIEW_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "expand",
                 "narrow", "select", "t", "unflatten", "view_as", "expand_as", "chunk", "split", "unbind",
                 "movedim", "contiguous", "__getitem__"}
_VIEW_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose,
                   torch.permute, torch.narrow, torch.select, torch.chunk, torch.split, torch.unbind,
                   torch.movedim, operator.getitem}


#: Functions named like in-place ones that are not (an export graph combines the conditions of
#: its runtime size checks with ``operator.and_``).
_PURE_UNDERSCORED = {operator.and_, operator.or_, operator.not_, operator.is_}


def _is_inplace_name(name: str) -> bool:
    return name.endswith("_") and not name.startswith("_")


def _is_view(node: fx.Node) -> bool:
    if node.op == "call_method":
        return str(node.target) in _VIEW_METHODS
    if node.op == "call_function":
        return node.target in _VIEW_FUNCTIONS
    return False


def _mutated_input(gm: fx.GraphModule, node: fx.Node, label: str) -> object:
    """Rewrite ``node`` out of place if it works in place; return the value it mutated (or None)."""
    if node.op == "call_function":
        if node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
            return node.args[0] if node.args else None
        if node.target in _INPLACE_OPERATORS:
            node.target = _INPLACE_OPERATORS[node.target]
            return node.args[0]
        if _is_inplace_name(getattr(node.target, "__name__", "")) and node.target not in _PURE_UNDERSCORED:
            pure = getattr(torch, node.target.__name__[:-1], None)
            if pure is None:
                raise TraceError(f"{label}: cannot run the in-place call {node.format_node()} "
                                 f"out of place; make it a module or use the out-of-place function")
            node.target = pure
            return node.args[0]
        return None
    if node.op == "call_method" and _is_inplace_name(str(node.target)):
        node.target = str(node.target)[:-1]
        return node.args[0]
    if node.op == "call_module" and getattr(gm.get_submodule(str(node.target)), "inplace", False) is True:
        return node.args[0] if node.args else None
    return None


def _read_again(view: fx.Node, node: fx.Node, position: dict[fx.Node, int]) -> bool:
    """Whether a value ``view`` is a view of is read after ``node`` other than through ``view``."""
    chain = [view]
    while _is_view(chain[-1]) and chain[-1].args and isinstance(chain[-1].args[0], fx.Node):
        chain.append(chain[-1].args[0])
    return any(user is not node and user not in chain and position.get(user, -1) > position[node]
               for value in chain[1:] for user in value.users)


def _copy_for_module(gm: fx.GraphModule, node: fx.Node, view: fx.Node, position: dict[fx.Node, int],
                     label: str) -> None:
    """An in-place module reading a view works on a copy of it (see the module docstring)."""
    module = gm.get_submodule(str(node.target))
    if _read_again(view, node, position) and not isinstance(module, nn.modules.dropout._DropoutNd):
        raise TraceError(f"{label}: module {node.target!r} ({type(module).__name__}, inplace=True) updates a view "
                         f"of a value that is read again later, which the Family cannot share between streams; "
                         f"build the model with inplace=False for that module")
    with gm.graph.inserting_before(node):
        copy = gm.graph.call_method("clone", (view,))
    node.replace_input_with(view, copy)


def updates_state(node: fx.Node) -> bool:
    """Whether ``node`` updates one of the module's own tensors in place (a batch norm's
    ``num_batches_tracked.add_(1)`` traced through): module state, not a value the streams
    share, so the update stays in place, as the model itself makes it."""
    if not node.args or not isinstance(node.args[0], fx.Node) or node.args[0].op != "get_attr":
        return False
    if node.op == "call_method":
        return _is_inplace_name(str(node.target))
    if node.op == "call_function":
        return node.target in _INPLACE_OPERATORS or (_is_inplace_name(getattr(node.target, "__name__", ""))
                                                     and node.target not in _PURE_UNDERSCORED)
    return False


def functionalize(gm: fx.GraphModule, label: str) -> None:
    """Rewrite in-place functions and methods of ``gm`` out of place and rebind their later readers."""
    graph = gm.graph
    nodes = list(graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    for node in nodes:
        if updates_state(node):
            continue
        mutated = _mutated_input(gm, node, label)
        if not isinstance(mutated, fx.Node):
            continue
        if _is_view(mutated) and node.op == "call_module":
            _copy_for_module(gm, node, mutated, position, label)
        elif _is_view(mutated):
            raise TraceError(f"{label}: {node.format_node()} updates a view of another value in place, "
                             f"which the Family cannot share between streams; write it out of place")
        for user in list(mutated.users):
            if user is not node and position.get(user, -1) > position[node]:
                user.replace_input_with(mutated, node)
    graph.lint()


__all__ = ["functionalize", "updates_state"]
