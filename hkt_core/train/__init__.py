"""Training: methods (parent, baseline, kd, hkt, ...), the trainer, run folders and resumable checkpoints.

``hkt_core.train(pair, method, **overrides) -> Run`` trains; ``hkt_core.load_run(path) -> Run``
opens a finished run. The method protocol is in :mod:`hkt_core.train.methods.method`.

Four layers, each importing only those before it (``tests/test_architecture.py`` checks it):
:mod:`.folders` (run folders: layout, loading, checkpoints, identity, integrity, lock, parents cache,
tracking, plots, export) <- :mod:`.methods` (the method protocol and the built-in methods) <-
:mod:`.loop` (the training loop: optimisation, distribution, evaluation, acceleration, data) <-
:mod:`.setup` (the configuration merge, the resolved pair, the pre-flight's dry run, the trainer
as ``hkt train`` runs it, reuse and comparisons).
"""

from __future__ import annotations

from .methods.method import Method, MethodContext, StepOutput
from .folders.run import Run, load_run
from .setup.api import train

__all__ = ["Method", "MethodContext", "Run", "StepOutput", "load_run", "train"]
