"""Training: methods (parent, baseline, kd, hkt), the trainer, run folders and resumable checkpoints.

``hkt_core.train(pair, method, **overrides) -> Run`` trains; ``hkt_core.load_run(path) -> Run``
opens a finished run. The method protocol is in :mod:`hkt_core.train.method`.
"""

from __future__ import annotations

from .api import train
from .methods.method import Method, MethodContext, StepOutput
from .run import Run, load_run

__all__ = ["Method", "MethodContext", "Run", "StepOutput", "load_run", "train"]

