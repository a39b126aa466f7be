"""Resolving alignment names on a traced graph, with errors that point at valid names.

Both functions ask the graph's :class:`hkt_core.trace.names.NameTable` (the naming service the
tracer builds); they differ only in what they report.
"""

from __future__ import annotations

from collections.abc import Sequence

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
