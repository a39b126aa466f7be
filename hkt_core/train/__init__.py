"""Training: methods (parent, baseline, kd, hkt), the trainer, run folders and resumable checkpoints.

``hkt_core.train(pair, method, **overrides) -> Run`` trains; ``hkt_core.load_run(path) -> Run``
opens a finished run. The method protocol is in :mod:`hkt_core.train.method`.

Once this sub-package is imported, Python binds ``hkt_core.train`` to it (a package attribute
wins over the lazy name), so the package itself is made callable: ``hkt_core.train(...)`` then
calls :func:`train` either way.
"""

from __future__ import annotations

import sys
import types

from .api import train
from .method import Method, MethodContext, StepOutput
from .run import Run, load_run

__all__ = ["Method", "MethodContext", "Run", "StepOutput", "load_run", "train"]


class _CallableTrainPackage(types.ModuleType):
    def __call__(self, pair, method, **overrides):
        return train(pair, method, **overrides)


sys.modules[__name__].__class__ = _CallableTrainPackage
