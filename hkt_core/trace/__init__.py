"""Tracing models into graphs: the project tracer, the naming rule, the torch.export fallback.

What the Family (and anything else that wires operators into a model) should call:

- ``trace(model, example_inputs, adapter=None) -> TracedModel``: the fx ``GraphModule`` (``.gm``,
  sharing parameters and buffers with ``model``), ``.backend`` (``"fx"``, or ``"export"`` when
  symbolic tracing failed on control flow and ``torch.export.export(strict=False)`` traced it),
  ``.graph`` (networkx DiGraph of values: op, module, module_type, shape, params, flops, index,
  fx_node), ``.nodes`` (name -> fx.Node), ``.names`` (fx.Node -> name), ``.prediction`` (the
  adapter's prediction output), ``.input_shapes``. The graph is the model in eval mode (by either
  backend); :mod:`hkt_core.trace.modes` traces the train graph where a model runs in training mode
  (``mode_graphs``, ``trace_in_mode``, ``in_mode``).
- ``hkt_core.align.resolve.resolve(gm, names) -> list[fx.Node]`` (``from hkt_core.align import resolve``): the nodes an :class:`Alignment` names, on
  the Family's own trace (from ``trace`` or ``fx_trace``); unknown names raise ``AlignmentError``
  listing nearby valid names.
- ``fx_trace(model, adapter=None, concrete_args=None)`` and ``node_names(graph)`` when only the fx
  graph is needed; names follow the rule in :mod:`hkt_core.trace.names`.
- ``name_table(gm) -> NameTable``: every name each value answers to (public names, module-output
  aliases, scoped names such as ``layer1.0.add_1``, fx names), built by the tracer; the one
  place names are resolved.
"""

from .graph import TracedModel, evaluation, trace
from .names import NameTable, name_table
from .tracer import BACKEND_KEY, HKTTracer, fx_trace, module_output_aliases, node_names

__all__ = ["BACKEND_KEY", "HKTTracer", "NameTable", "TracedModel", "evaluation", "fx_trace",
           "module_output_aliases", "name_table", "node_names", "trace"]
