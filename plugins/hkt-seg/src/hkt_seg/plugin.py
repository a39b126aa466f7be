"""The plugin module named by the entry point ``seg = "hkt_seg.plugin"`` (group ``hkt``).

It registers, through the same hooks any third-party plugin uses: the U-Net models and their
adapter, the ``seg`` task and its metrics (the core's segmentation task and metrics with this
experiment's settings), the data sets, the pair cards in ``pairs/`` and the ``hkt seg`` command.
"""

from __future__ import annotations


from hkt_core import hookimpl, registers
from hkt_core import shipped_cards


@registers(task="seg")
def hkt_register_models():
    from .models import MODELS

    return MODELS


@hookimpl
def hkt_register_adapters(registry):
    from .adapter import UNetAdapter

    registry.add("seg-unet", UNetAdapter(), description="hkt-seg U-Nets: encoder, bottleneck, decoder blocks")


#: Mask value of pixels that count in no loss and no metric (the usual "void" value of PNG masks).
IGNORE_INDEX = 255


@hookimpl
def hkt_register_tasks(registry):
    from hkt_core.tasks import SegmentationTask

    registry.add("seg", SegmentationTask("ce+dice", name="seg", ignore_index=IGNORE_INDEX),
                 description="segmentation: cross-entropy + soft Dice, global Dice/IoU, ignore index 255")


@hookimpl
def hkt_register_metrics(registry):
    from hkt_core.tasks.metrics import Accuracy, Dice, IoU

    registry.add("seg_dice", Dice(ignore_index=IGNORE_INDEX), description="global mean Dice over foreground classes")
    registry.add("seg_iou", IoU(ignore_index=IGNORE_INDEX), description="global mean IoU over foreground classes")
    registry.add("seg_accuracy", Accuracy(IGNORE_INDEX), description="fraction of counted pixels right")


@registers(task="seg")
def hkt_register_datasets():
    from .datasets import DATASETS

    return DATASETS


hkt_register_pairs = shipped_cards("hkt_seg")


@hookimpl
def hkt_register_commands(registry):
    from .cli import configure

    registry.add("seg", configure, description="segmentation tools: prediction overlays of a run")
