"""Resolving alignment names on a traced graph, with errors that point at valid names."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from torch import fx

from ..errors import AlignmentError
from ..trace.graph import TracedModel
from ..trace.tracer import BACKEND_KEY, module_output_aliases, node_names


def _near_names(name: str, choices: Sequence[str], n: int = 6) -> list[str]:
    near = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.4)
    if near:
        return near
    prefix = name.split("#", 1)[0].rsplit(".", 1)[0]
    same_scope = [c for c in choices if c.startswith(prefix)] if prefix else []
    return (same_scope or list(choices))[:n]


def unknown_node_error(traced: TracedModel, name: str, what: str = "node") -> AlignmentError:
    model = type(traced.model).__name__
    near = _near_names(name, [n for n in traced.order if n not in traced.inputs])
    return AlignmentError(f"unknown {what} {name!r} in {model}; nearby valid names: {', '.join(near)} "
                          f"(`hkt align` lists the candidate blocks)")


def resolve(gm: fx.GraphModule, names: Sequence[str]) -> list[fx.Node]:
    """The fx nodes of ``gm`` that ``names`` denote (the naming rule, aliases accepted).

    ``gm`` is a GraphModule from :func:`hkt_core.trace.trace` or :func:`hkt_core.trace.fx_trace`
    (any backend). Raises :class:`AlignmentError` naming each unknown name and valid names near it.
    """
    public = node_names(gm.graph)
    table: dict[str, fx.Node] = {}
    for node, name in public.items():
        if node.op not in ("output", "get_attr"):
            table.setdefault(name, node)
    for node, aliases in module_output_aliases(gm.graph).items():
        for alias in aliases:
            table.setdefault(alias, node)
    for node in gm.graph.nodes:
        if node.op not in ("output", "get_attr"):
            table.setdefault(node.name, node)
    out, unknown = [], []
    for name in names:
        if name in table:
            out.append(table[name])
        else:
            unknown.append(name)
    if unknown:
        valid = [public[n] for n in gm.graph.nodes if n.op not in ("output", "get_attr", "placeholder")]
        backend = gm.meta.get(BACKEND_KEY, "fx")
        parts = [f"{name!r} (nearby valid names: {', '.join(_near_names(name, valid))})" for name in unknown]
        raise AlignmentError(f"unknown node name(s) in the {backend}-traced {type(gm).__name__}: "
                             + "; ".join(parts))
    return out
