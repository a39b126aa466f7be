"""The ``flow`` plugin's hook implementations (entry point ``flow = "hkt_flow.plugin"``)."""

from __future__ import annotations

from importlib.util import find_spec

from hkt_core import hookimpl


def _torchvision_installed() -> bool:
    """Whether torchvision can be imported, without importing it (that takes seconds)."""
    try:
        return find_spec("torchvision") is not None
    except (ImportError, ValueError):
        return False


@hookimpl
def hkt_register_models(registry):
    from .models import MODELS

    for name, factory in MODELS.items():
        registry.add(name, factory, task="flow")
    if _torchvision_installed():
        from .torchvision_models import TV_MODELS

        for name, factory in TV_MODELS.items():
            registry.add(name, factory, task="flow", source="torchvision")


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
def hkt_register_losses(registry):
    from .task import FlowTask

    registry.add("flow", FlowTask(), description="optical flow: RAFT sequence loss, valid-pixel MAE, EPE")


@hookimpl
def hkt_register_metrics(registry):
    from .metrics import flow_metrics

    for metric in flow_metrics():
        registry.add(f"flow_{metric.name}", metric, description=(metric.__doc__ or "").strip().splitlines()[0])


@hookimpl
def hkt_register_datasets(registry):
    from .datasets import DATASETS

    for name, (factory, description) in DATASETS.items():
        registry.add(name, factory, description=description)


@hookimpl
def hkt_register_pairs(registry):
    from importlib import resources

    from hkt_core.pairs import register_cards_from

    register_cards_from(registry, resources.files("hkt_flow") / "pairs")


@hookimpl
def hkt_register_commands(registry):
    from .cli import configure

    registry.add("flow", configure, description="pictures of optical-flow predictions")
