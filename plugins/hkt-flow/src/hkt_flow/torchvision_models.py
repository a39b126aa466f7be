"""torchvision's RAFT models (``tv_raft_large``, ``tv_raft_small``) and the adapter that claims them.

Registered only when torchvision is installed (the ``torchvision`` extra). torchvision is
imported when a model is built, not when the plugin loads: importing it takes seconds, and most
``hkt`` commands never need it.

The models are built with ``weights=None``: nothing is downloaded. To start from torchvision's
published weights, load a state dict you already have into the built model.

Two forms, one set of weights (the same sub-modules, torchvision's ``state_dict`` keys):

- torchvision's own ``RAFT`` (``traceable=False``, or any model built with torchvision). torch.fx
  cannot trace its forward: it checks the input shapes in Python ``if`` statements in the
  top-level forward, where no leaf module can hide them. The engine's tracer falls back to
  ``torch.export`` (backend ``"export"``: a graph specialised to the example shapes and to eval
  mode). Alignment works on it; the Family, which needs a torch.fx graph, refuses it with a
  :class:`hkt_core.errors.TraceError`.
- :class:`hkt_flow.torchvision_fx.TraceableRAFT` (the registered models' default; wrap any
  torchvision RAFT with it): the same network with an fx-traceable forward and four stateless
  leaf modules. fx traces it, so the Family trains it with HKT.

Blocks (the naming rule of :mod:`hkt_core.trace.tracer`):

==========================  =====================  ==========================================
block                       graph value            shape
==========================  =====================  ==========================================
feature extraction          ``feature_encoder``    ``(2B, 256 | 128, H/8, W/8)`` both frames
context extraction          ``context_encoder``    ``(B, 256 | 160, H/8, W/8)``
flow prediction (output)    ``upsampler#N`` (fx)   ``(B, 2, H, W)``, the final flow
==========================  =====================  ==========================================

In an export graph the final flow is not a module's output (torchvision upsamples it with a free
function): it is named by an operator node whose name depends on the torch version and the number
of updates, so the adapter declares only the two encoders there; the engine pairs the models'
predictions last in every alignment whatever their names.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hkt_core import ConfigError

from .adapter import RAFTAdapter, final_flow_name

#: Graph value of the feature encoder's output (both frames, frame 1 first).
FEATURE_BLOCK = "feature_encoder"
#: Graph value of the context encoder's output (hidden state and context, before the split).
CONTEXT_BLOCK = "context_encoder"
#: torchvision's default number of flow updates, used when a model does not say otherwise.
DEFAULT_FLOW_UPDATES = 12
#: Smallest frame side torchvision's 4-level correlation pyramid accepts (16 positions at 1/8).
MIN_SIDE = 128


def _build(builder_name: str, num_flow_updates: int, traceable: bool, options: dict[str, Any]) -> nn.Module:
    if options.get("weights") is not None:
        raise ConfigError(f"tv_{builder_name}: pretrained weights are not downloaded here (weights=None "
                         f"only); build the model, then load a state dict you already have")
    options.pop("weights", None)
    options.pop("progress", None)
    if not isinstance(num_flow_updates, int) or isinstance(num_flow_updates, bool) or num_flow_updates < 1:
        raise ConfigError(f"tv_{builder_name}: num_flow_updates must be a positive integer, got {num_flow_updates!r}")
    from torchvision.models import optical_flow

    model = getattr(optical_flow, builder_name)(weights=None, progress=False, **options)
    model.hkt_flow_updates = num_flow_updates
    if traceable:
        from .torchvision_fx import TraceableRAFT

        return TraceableRAFT(model)
    return model


def tv_raft_large(num_flow_updates: int = DEFAULT_FLOW_UPDATES, traceable: bool = True,
                  **options: Any) -> nn.Module:
    """torchvision's ``raft_large`` (5.26M parameters), randomly initialised.

    ``num_flow_updates`` is fixed when the engine traces the model; ``traceable=False`` returns
    torchvision's own class (alignment only); other keyword options go to
    ``torchvision.models.optical_flow.raft_large``.
    """
    return _build("raft_large", num_flow_updates, traceable, dict(options))


def tv_raft_small(num_flow_updates: int = DEFAULT_FLOW_UPDATES, traceable: bool = True,
                  **options: Any) -> nn.Module:
    """torchvision's ``raft_small`` (0.99M parameters), randomly initialised (options as ``tv_raft_large``)."""
    return _build("raft_small", num_flow_updates, traceable, dict(options))


#: name -> factory, as registered in the ``models`` registry.
TV_MODELS = {"tv_raft_large": tv_raft_large, "tv_raft_small": tv_raft_small}


def _is_torchvision_raft(model: nn.Module) -> bool:
    # A torchvision model exists only if torchvision was imported: check without importing it.
    module = sys.modules.get("torchvision.models.optical_flow.raft")
    return module is not None and isinstance(model, module.RAFT)


def _updates(model: nn.Module) -> int:
    return int(getattr(model, "hkt_flow_updates", DEFAULT_FLOW_UPDATES))


class TorchvisionRAFTAdapter(RAFTAdapter):
    """Claims torchvision's ``RAFT`` (any size): blocks, example frames, the final flow."""

    model_classes = ()
    model_names = tuple(TV_MODELS)

    @property
    def leaf_modules(self) -> tuple[type, ...]:  # type: ignore[override]
        """:data:`hkt_flow.torchvision_fx.LEAF_MODULES` once torchvision is loaded (no import before)."""
        if "torchvision" not in sys.modules:
            return ()
        from .torchvision_fx import LEAF_MODULES

        return LEAF_MODULES

    def handles(self, model: nn.Module) -> bool:
        return _is_torchvision_raft(model) or getattr(model, "hkt_model_name", None) in self.model_names

    def declared_blocks(self, model: nn.Module) -> list[str]:
        """The two encoders and, on the fx-traceable form, the final flow ``upsampler#N``.

        On torchvision's own class the final flow has no stable name; it is the prediction, which
        the engine always pairs last.
        """
        if getattr(model, "fx_traceable", False):
            return [FEATURE_BLOCK, CONTEXT_BLOCK, final_flow_name(_updates(model))]
        return [FEATURE_BLOCK, CONTEXT_BLOCK]

    def concrete_args(self, model: nn.Module) -> dict[str, Any]:
        """``None`` for the fx-traceable form (it reads its own count); the count for torch.export."""
        if getattr(model, "fx_traceable", False):
            return {"num_flow_updates": None}
        return {"num_flow_updates": _updates(model)}

    def example_inputs(self, model: nn.Module, shapes: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        """Two frames in [-1, 1] (torchvision's convention); the second is the first shifted by one pixel.

        torchvision's RAFT needs H and W multiples of 8 and at least 128 (:data:`MIN_SIDE`);
        tracing smaller frames fails with torchvision's own message.
        """
        if len(shapes) == 1:
            shapes = [shapes[0], shapes[0]]
        gen = torch.Generator().manual_seed(0)
        first = torch.rand(*shapes[0], generator=gen) * 2 - 1
        second = torch.roll(first, shifts=1, dims=-1)
        return (first, second)
