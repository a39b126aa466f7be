"""``baseline``: the child alone on the task loss; ``parent``: the same step training the pair's parent."""

from __future__ import annotations

from .method import Method, StepOutput
from .registry import method


class BaselineMethod(Method):
    """The child alone, trained on the task loss."""

    def training_step(self, inputs, target):
        prediction = self.child_adapter.prediction(self.model(*inputs))
        loss = self.ctx.task.loss(prediction, target)
        return StepOutput(loss, {"task": float(loss.detach())})


@method("parent", roles=("every-pair",))
class ParentMethod(BaselineMethod):
    """Trains the pair's parent from scratch on the task loss (the trainer then caches it).

    The trainer puts the parent network in ``ctx.child``: it is the network this method trains,
    evaluates and saves.
    """

    trains_parent = True


# registered after ``parent``, which derives from it: the table lists the parent first
method("baseline", roles=("every-pair", "demo"))(BaselineMethod)
