"""Adapters for the plugin's networks: opaque functional blocks, declared in forward order.

Each network lists its blocks in ``hkt_blocks`` (``stem``, ``layer1`` ..., ``pool``, ``fc``).
Keeping the block classes as tracer leaves makes each block one graph value named by its module
path (the naming rule of :mod:`hkt_core.trace.tracer`), so the pooled feature vector is the single
value ``"pool"``: where the paper mixes its CIFAR pair.
"""

from __future__ import annotations

from torch import nn

from hkt_core import Adapter

from .models.blocks import ConvBNAct, DenseBlock, GlobalPool, Stage
from .models.convnet import ConvNet
from .models.mlp import MLP
from .models.resnet import CifarResNet

LEAF_BLOCKS: tuple[type[nn.Module], ...] = (ConvBNAct, Stage, GlobalPool, DenseBlock)


class BlockListAdapter(Adapter):
    """Declares a model's ``hkt_blocks`` and keeps the block modules opaque to the tracer."""

    leaf_modules = LEAF_BLOCKS

    def declared_blocks(self, model: nn.Module) -> list[str] | None:
        blocks = getattr(model, "hkt_blocks", None)
        return list(blocks) if blocks else None


class CifarResNetAdapter(BlockListAdapter):
    """CIFAR ResNets (He et al. 2016): stem, three stages, pooled features, classifier."""

    model_classes = (CifarResNet,)


class ConvNetAdapter(BlockListAdapter):
    """Small 2-D and 1-D CNNs: stem, pooled stages, pooled features, classifier."""

    model_classes = (ConvNet,)


class MLPAdapter(BlockListAdapter):
    """Multi-layer perceptrons: flatten, dense blocks, classifier."""

    model_classes = (MLP,)


#: registered adapter name -> adapter instance
ADAPTERS = {
    "cifar-resnet": CifarResNetAdapter(),
    "vision-convnet": ConvNetAdapter(),
    "vision-mlp": MLPAdapter(),
}
