"""The plugin module named by the entry point ``seg = "hkt_seg.plugin"`` (group ``hkt``).

It registers, through the same hooks any third-party plugin uses: the U-Net models and their
adapter, the ``seg`` task, the Dice/IoU metrics, the data sets, the pair cards in ``pairs/`` and
the ``hkt seg`` command.
"""

from __future__ import annotations

from importlib import resources

from hkt_core import hookimpl


@hookimpl
def hkt_register_models(registry):
    from .models import MODELS

    for name, factory in MODELS.items():
        registry.add(name, factory, task="seg")


@hookimpl
def hkt_register_adapters(registry):
    from .adapter import UNetAdapter

    registry.add("seg-unet", UNetAdapter(), description="hkt-seg U-Nets: encoder, bottleneck, decoder blocks")


@hookimpl
def hkt_register_losses(registry):
    from .task import SegmentationTask

    registry.add("seg", SegmentationTask(),
                 description="segmentation: cross-entropy + soft Dice, global Dice/IoU, ignore index 255")


@hookimpl
def hkt_register_metrics(registry):
    from .metrics import MeanDice, MeanIoU, PixelAccuracy

    registry.add("seg_dice", MeanDice(ignore_index=255), description="global mean Dice over foreground classes")
    registry.add("seg_iou", MeanIoU(ignore_index=255), description="global mean IoU over foreground classes")
    registry.add("seg_pixel_accuracy", PixelAccuracy(ignore_index=255), description="fraction of pixels right")


@hookimpl
def hkt_register_datasets(registry):
    from .datasets import DATASETS

    for name, factory in DATASETS.items():
        registry.add(name, factory, task="seg")


@hookimpl
def hkt_register_pairs(registry):
    from hkt_core.pairs import register_cards_from

    register_cards_from(registry, resources.files("hkt_seg") / "pairs")


@hookimpl
def hkt_register_commands(registry):
    from .cli import configure

    registry.add("seg", configure, description="segmentation tools: prediction overlays of a run")
