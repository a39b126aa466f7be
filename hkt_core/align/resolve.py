"""Resolving alignment names on a traced graph, with errors that point at valid names.

Both functions ask the graph's :class:`hkt_core.trace.names.NameTable` (the naming service the
tracer builds); they differ only in what they report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import fx

from ..errors import AlignmentError, closest
from ..trace.graph import TracedModel
from ..trace.names import name_table


def unknown_node_error(traced: TracedModel, name: str, what: str = "node") -> AlignmentError:
    model = type(traced.model).__name__
    near = closest(name, [n for n in traced.order if n not in traced.inputs])
    return AlignmentError(f"unknown {what} {name!r} in {model}; nearby valid names: {', '.join(near)} "
                          f"(`hkt align` lists the candidate blocks)")


def resolve(gm: fx.GraphModule, names: Sequence[str]) -> list[fx.Node]:
    """The fx nodes of ``gm`` that ``names`` denote (the naming rule, aliases accepted).

    ``gm`` is a GraphModule from :func:`hkt_core.trace.trace` or :func:`hkt_core.trace.fx_trace`
    (any backend). Raises :class:`AlignmentError` naming each unknown name and valid names near it.
    """
    table = name_table(gm)
    return table.resolve(names, f"the {table.backend}-traced {type(gm).__name__}")


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise AlignmentError(f"{what} must be a node name or a list of node names, got {value!r}")


def name_pairs(alignment: Any) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``(parent names, child names)`` per pair of an :class:`Alignment` or a list of name pairs
    (a side may name several values); at least two pairs (a mixing point plus the predictions)."""
    raw = getattr(alignment, "pairs", alignment)
    try:
        items = list(raw)
    except TypeError:
        raise AlignmentError(f"an alignment is an Alignment record or a list of (parent, child) name pairs, "
                             f"got {type(alignment).__name__}") from None
    pairs = []
    for i, item in enumerate(items):
        if hasattr(item, "parent") and hasattr(item, "child"):
            parent, child = item.parent, item.child
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            parent, child = item
        else:
            raise AlignmentError(f"alignment pair {i} must be (parent_name, child_name), got {item!r}")
        pairs.append((_names(parent, f"alignment pair {i} parent"), _names(child, f"alignment pair {i} child")))
    if len(pairs) < 2:
        raise AlignmentError(f"HKT needs at least two aligned pairs (one mixing point plus the predictions), "
                             f"got {len(pairs)}")
    return pairs
