"""What the Family tests share: a plugin manager with the core operators only, and a plain task."""

from __future__ import annotations

import torch.nn.functional as F

import hkt_core
from hkt_core import builtins

#: Operators come from the core plugin alone: building a Family need not load every installed plugin.
CORE = hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins})


class ToyTask:
    """Cross-entropy task loss; MAE between softmax and one-hot for inheritance (written out plainly)."""

    def loss(self, prediction, target):
        return F.cross_entropy(prediction, target)

    def inherit_loss(self, prediction, target):
        one_hot = F.one_hot(target, prediction.shape[1]).to(prediction.dtype)
        return (prediction.softmax(1) - one_hot).abs().mean()
