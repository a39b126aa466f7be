"""The trainer as ``hkt train`` runs it: the loop (:mod:`hkt_core.train.loop.trainer`) on the pair
resolved here, after the pre-flight's dry run (:func:`hkt_core.train.setup.preflight.dry_run`).

``hkt_core.train.trainer`` (the module before train/ was layered) is this module: it serves the
names it served."""

from __future__ import annotations

from typing import Any

from ...errors import TrainingDiverged
from ..loop.evaluation import evaluate, measure_latency
from ..loop.seeding import seed_everything
from ..loop.trainer import EpochCallback, RunSpec, TrainingLoop, resolve_device
from ..methods.build import build_method
from .preflight import dry_run
from .resolved import ResolvedPair


class Trainer(TrainingLoop):
    """Runs one :class:`RunSpec` to completion (or resumes it). Use :meth:`fit`."""

    def _resolve_pair(self):
        """The spec's :class:`ResolvedPair`, or one made from its card, once."""
        if self.pair is None:
            spec = self.spec
            given = spec.pair
            if isinstance(given, ResolvedPair) and given.manager is spec.manager:
                given.card, given.train = spec.run_card, spec.train
                self.pair = given
            else:
                self.pair = ResolvedPair(card=spec.run_card, manager=spec.manager, train=spec.train)
        return self.pair

    def _dry_run(self, alignment: Any) -> Any:
        return dry_run(self.spec, self.pair, device=self.device, alignment=alignment)


__all__ = ["EpochCallback", "RunSpec", "Trainer", "TrainingDiverged", "TrainingLoop", "build_method", "evaluate",
           "measure_latency", "resolve_device", "seed_everything"]
