"""The ``flow`` plugin's hook implementations (entry point ``flow = "hkt_flow.plugin"``)."""

from __future__ import annotations

from importlib.util import find_spec

from hkt_core import hookimpl, registers
from hkt_core import shipped_cards


def _torchvision_installed() -> bool:
    """Whether torchvision can be imported, without importing it (that takes seconds)."""
    try:
        return find_spec("torchvision") is not None
    except (ImportError, ValueError):
        return False


@registers(task="flow")
def hkt_register_models():
    from .models import MODELS

    provided = list(MODELS.items())
    if _torchvision_installed():
        from .torchvision_models import TV_MODELS

        provided += [(name, factory, {"source": "torchvision"}) for name, factory in TV_MODELS.items()]
    return provided


@hookimpl
def hkt_register_adapters(registry):
    from .adapter import RAFTAdapter

    registry.add("raft", RAFTAdapter(), description="RAFT family: blocks fnet, cnet, final upsampled flow")
    if _torchvision_installed():
        from .torchvision_models import TorchvisionRAFTAdapter

        registry.add("tv_raft", TorchvisionRAFTAdapter(),
                     description="torchvision RAFT: blocks feature_encoder, context_encoder, final flow "
                                 "(TraceableRAFT trains; torchvision's own class aligns only)")


@hookimpl
def hkt_register_tasks(registry):
    from .task import FlowTask

    registry.add("flow", FlowTask(), description="optical flow: RAFT sequence loss, valid-pixel MAE, EPE")


@registers()
def hkt_register_metrics():
    from .metrics import flow_metrics

    return [(f"flow_{metric.name}", metric, {"description": (metric.__doc__ or "").strip().splitlines()[0]})
            for metric in flow_metrics()]


@registers()
def hkt_register_datasets():
    from .datasets import DATASETS

    return [(name, factory, {"description": description}) for name, (factory, description) in DATASETS.items()]


hkt_register_pairs = shipped_cards("hkt_flow")


@hookimpl
def hkt_register_commands(registry):
    from .cli import configure

    registry.add("flow", configure, description="pictures of optical-flow predictions")
