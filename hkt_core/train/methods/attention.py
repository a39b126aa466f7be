"""``attention-transfer``: Zagoruyko & Komodakis (2017) at the automatically aligned points.

``loss = task(child, y) + beta/2 * sum_k mean_b,j (Q_S/|Q_S| - Q_T/|Q_T|)^2`` with ``Q = mean_c |A_c|^p``
over a value's positions (a map's, or its tokens'), at every aligned point with positions; the
points are the automatic alignment at ``stages`` (vector points are skipped). mdistiller's and
RepDistiller's weight of 1000 on the plain sum is ``beta = 2000`` here.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from ...errors import ConfigError
from .aligned import ALIGNMENT_CHOICES, AlignedFeatures, alignment_choice_ok, on_positions
from .method import Method, StepOutput, number_option, option
from .registry import method


@attrs.frozen
class AttentionOptions:
    beta: float = number_option(1000.0, at_least=0)            # the paper's beta (the term is beta/2 * ...)
    p: float = number_option(2.0, above=0)                     # the paper's p
    stages: int = number_option(3, at_least=0, integer=True)   # align at this many stages; 0: the card's
    alignment: str = option("auto", alignment_choice_ok, ALIGNMENT_CHOICES)


def attention(x: torch.Tensor, p: float) -> torch.Tensor:
    """``(B, C, *positions)`` -> the L2-normalised spatial attention map ``(B, positions)``."""
    return F.normalize(x.abs().pow(p).mean(1).flatten(1), dim=1)


def attention_loss(child: torch.Tensor, parent: torch.Tensor, p: float) -> torch.Tensor:
    """Mean over samples and positions of the squared difference of the two attention maps, at the
    smaller of the two resolutions (the larger value average-pooled to it, as mdistiller does)."""
    if child.dim() != parent.dim():   # tokens on a grid against tokens without one: as sequences
        child, parent = child.flatten(2), parent.flatten(2)
    size = tuple(min(a, b) for a, b in zip(child.shape[2:], parent.shape[2:]))
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(size)]
    child, parent = (v if v.shape[2:] == size else pool(v, size) for v in (child, parent))
    return (attention(child, p) - attention(parent.to(child.dtype), p)).pow(2).mean()


@method("attention-transfer")
class AttentionTransferMethod(Method):
    """Attention transfer (module docstring); options :class:`AttentionOptions`."""

    needs_parent = True
    Options = AttentionOptions

    def __init__(self, ctx):
        super().__init__(ctx)
        alignment = self.aligned_at(self.options.alignment, self.options.stages or None)
        self.aligned = AlignedFeatures(ctx.parent, ctx.child, alignment, ctx.example_inputs,
                                       layouts=getattr(ctx.card, "layouts", None), manager=ctx.manager,
                                       adapters=(self.parent_adapter, self.child_adapter))
        self.points = [q for q in self.aligned.points if "vector" not in (q.parent_kind.kind, q.child_kind.kind)]
        if not self.points:
            raise ConfigError(f"attention-transfer needs an aligned point with positions (a map or tokens) before the "
                              f"predictions; this alignment has vectors only ({', '.join(q.child for q in self.aligned.points)}"
                              f" in the child): set method.stages to align at more points")

    def trainable_module(self):
        return self.aligned

    def training_step(self, inputs, target):
        values, parent = self.model(*inputs), self.aligned.parent_values(*inputs)
        task = self.ctx.task.loss(self.child_adapter.prediction(values["output"]), target)
        at = sum(attention_loss(on_positions(values[q.child], q.child_kind),
                                on_positions(parent[q.parent], q.parent_kind), self.options.p) for q in self.points)
        return StepOutput(task + self.options.beta / 2 * at, {"task": float(task.detach()), "at": float(at.detach())})
