"""The one loss library: tasks (:mod:`.task`: what a pair learns, its loss, distillation loss and
metrics), the metrics (:mod:`.metrics`) and the loss functions they share (:mod:`.losses`).

``hkt_core.tasks`` keeps serving the task module's names (``Task``, ``ClassificationTask``, ...)."""

from .task import ClassificationTask, RegressionTask, SegmentationTask, Task, builtin_tasks

__all__ = ["ClassificationTask", "RegressionTask", "SegmentationTask", "Task", "builtin_tasks"]
