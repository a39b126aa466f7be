"""Running two traced networks node by node, in lockstep, pausing at aligned nodes.

The machinery under :class:`hkt_core.family.Family`, which keeps the HKT plan (mixing points,
operators, loss) and hands this package a ``mix`` callback:

- :mod:`.rewrite`: in-place operations rewritten out of place, so streams can share values;
- :mod:`.layout`: moving a value's channels to axis 1 and back (which values are tokens is
  :mod:`hkt_core.trace.kinds`' reading);
- :mod:`.interpreter`: :class:`LockstepGraph`, one traced network run node by node;
- :mod:`.features`: :func:`features`, the named values of one network as a module (with autograd);
- :mod:`.streams`: :class:`LockstepStreams`, the native / inherited / parent streams' schedule
  and their execution.
"""

from .interpreter import LockstepGraph, follow, release_plan
from .layout import from_channels_first, to_channels_first
from .rewrite import functionalize
from .streams import LockstepStreams, MixFn, StreamPoint

__all__ = ["LockstepGraph", "LockstepStreams", "MixFn", "StreamPoint", "follow",
           "from_channels_first", "functionalize", "release_plan", "to_channels_first"]
