"""The training loop (the loop layer: it imports folders/ and methods/ only): one method, one run folder, checkpoints every epoch, exact resume.

Selection and evaluation rules: the checkpoint kept in ``child.safetensors`` is the best on the
task's primary *validation* metric (direction declared by the task; ties keep the earlier epoch);
the test split is evaluated once, at the end, on that checkpoint, and is never used for selection.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ...config import HKTConfig, TrainConfig, to_toml, unstructure
from ...errors import CheckpointError, ConfigError, HKTError, PeerLost, TrainingDiverged, TrainingInterrupted
from ...io import atomic_write_text
from ...models import count_parameters
from ...pairs.card import PairCard
from ..folders import checkpoint as ckpt
from ..folders import files
from ..folders.run import card_as_run
from .acceleration import Acceleration
from .data import Splits, split_batch, train_loader
from .distributed import (World, all_sum, any_flag, barrier, broadcast_text, close_world, init_world,
                          raise_together, sync_buffers)
from .evaluation import evaluate, measure_latency
from ..methods.build import build_method
from ..methods.method import Method
from .optim import build_optimizer, learning_rate, set_learning_rate

log = logging.getLogger("hkt.train")

#: An epoch-end callback: ``callback(epoch, record)`` after the epoch's checkpoint is committed.
EpochCallback = Callable[[int, dict[str, Any]], None]


@attrs.define
class RunSpec:
    """Everything a run needs, resolved: what :func:`hkt_core.train` builds from a pair and overrides."""

    card: PairCard
    method: str
    method_cls: type[Method]
    train: TrainConfig
    hkt: HKTConfig
    out: Path
    method_options: dict[str, Any] = attrs.field(factory=dict)
    resume: bool = False
    force: bool = False
    parent_weights: Path | None = None
    manager: Any = None
    progress: bool | None = None
    callbacks: Sequence[EpochCallback] = ()
    #: run the pre-flight (:func:`hkt_core.train.setup.preflight.dry_run`) before the run folder is touched
    preflight: bool = True
    #: the :class:`~hkt_core.train.setup.resolved.ResolvedPair` the run trains on (made from ``card`` when None)
    pair: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def run_card(self) -> PairCard:
        """The card as this run trains it: ``[hkt]`` (and for a child's run ``[train]``) are the run's."""
        return card_as_run(self.card, self.train, self.hkt, trains_parent=bool(self.method_cls.trains_parent))

    def config(self) -> dict[str, Any]:
        """The fully resolved configuration stored as config.toml (minus run-specific entries)."""
        return {
            "pair": self.card.name,
            "method": self.method,
            "trains_parent": bool(self.method_cls.trains_parent),
            "train": unstructure(self.train),
            "hkt": unstructure(self.hkt),
            "method_options": dict(self.method_options),
            "card": self.card.to_dict(),
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available; use cpu or auto")
    return torch.device(name)


def _say(world: World, message: str) -> None:
    if world.main:
        print(f"hkt: {message}", file=sys.stderr, flush=True)


@attrs.define
class _Session:
    """What one run's loop carries from step to step."""

    method: Method
    task: Any
    splits: Splits
    parent: nn.Module | None
    parent_info: dict[str, Any]
    trainable: nn.Module
    child: nn.Module
    extra: nn.Module | None
    optimizer: Any = None
    run_id: str = ""
    start_epoch: int = 0
    global_step: int = 0
    best: dict[str, Any] | None = None


# -- the run -----------------------------------------------------------------------------------

class _Terminated(BaseException):
    """SIGTERM during a distributed run (torchrun stopping the survivors of a failed rank)."""


def _stop_on_sigterm():
    """Turn SIGTERM into :class:`_Terminated` in the main thread; returns the previous handler."""
    def handler(signum, frame):
        raise _Terminated
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave the signal alone
        return None


class TrainingLoop:
    """Runs one :class:`RunSpec` on its resolved pair to completion (or resumes it). Use :meth:`fit`.

    The setup layer's :class:`~hkt_core.train.setup.training.Trainer` adds the pair's resolution
    and the pre-flight's dry run."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.device = resolve_device(spec.train.device)
        self.world = init_world(self.device)
        if self.device.type == "cuda" and self.world.distributed:
            self.device = torch.device("cuda", self.world.local_rank)
            torch.cuda.set_device(self.device)
        #: precision, compilation and memory format of the run (hkt_core.train.acceleration)
        self.accel = Acceleration(spec.train, self.device, say=lambda m: _say(self.world, m))
        #: the pair this run trains on, resolved once (:mod:`hkt_core.train.setup.resolved`)
        self.pair = None
        self._dry = None  # the pre-flight's dry run, whose method the run keeps

    # -- set-up ------------------------------------------------------------------------------
    def _prepare_folder(self) -> dict[str, Any] | None:
        """Lock, create, clear or recover the run folder (rank 0); returns the committed state on resume."""
        from ..folders.prepare import take_run_folder

        spec, out = self.spec, self.spec.out
        failure: HKTError | None = None
        resume = spec.resume
        if self.world.main:
            try:
                self._lock, resume = take_run_folder(out, resume=spec.resume, force=spec.force, config=spec.config(),
                                                     say=lambda m: _say(self.world, m))
            except HKTError as exc:
                failure = exc
        raise_together(self.world, failure)
        # a run stopped before its first checkpoint starts over
        spec.resume = broadcast_text(self.world, "1" if resume else "") == "1"
        barrier(self.world)
        return ckpt.read_state(out / files.STATE) if spec.resume else None

    def _resolve_parent(self, splits: Any = None) -> tuple[nn.Module | None, dict[str, Any]]:
        """The run's parent (a user's file, a pretrained parent of the card, or the cached one,
        trained when missing), refused when diverged or untrained (:func:`parents.check_parent`)."""
        spec = self.spec
        if not spec.method_cls.needs_parent:
            return None, {"source": "none"}
        from ..folders import parents

        into = self.pair.parent  # the module the method holds: loaded in place
        if spec.parent_weights is not None:
            parent, source = parents.load_parent_file(spec.card, spec.manager, spec.parent_weights, into=into)
        elif spec.resume and self._stored_parent().get("source") == "file":
            parent, source = parents.load_parent_file(spec.card, spec.manager, self._stored_parent()["path"],
                                                      into=into)
        elif (pretrained := parents.pretrained_parent(spec.card, spec.manager, model=into)) is not None:
            parent, source = pretrained  # used as it is: not trained, not cached
        else:
            def train_missing(folder: Path, train: TrainConfig) -> None:
                sub = RunSpec(card=spec.card, method="parent", method_cls=spec.manager.lookup("methods", "parent"),
                              train=attrs.evolve(train, device=spec.train.device), hkt=spec.hkt, out=folder,
                              resume=(folder / files.STATE).is_file(), force=True, manager=spec.manager,
                              progress=spec.progress, preflight=False)
                type(self)(sub).fit()   # the same kind of trainer, for the parent's run

            parent, source = parents.cached_parent(spec.card, spec.manager, train_missing=train_missing,
                                                   say=lambda m: _say(self.world, m), device=spec.train.device,
                                                   into=into)
        stored = self._stored_parent() if spec.resume else {}
        if stored.get("sha256") and stored["sha256"] != source.sha256:
            raise CheckpointError(f"the parent this run was started with ({stored.get('path')}) has changed "
                                  f"(sha256 {stored['sha256'][:12]} vs {source.sha256[:12]}); resuming would mix two "
                                  f"parents. Start a new run")
        for p in parent.parameters():
            p.requires_grad_(False)
        parent, info = parent.to(self.device).eval(), source.to_dict()
        if source.source in ("cache", parents.PRETRAINED):
            info.update(self._judge_parent(parent, source, splits))
        return parent, info

    def _judge_parent(self, parent: nn.Module, source: Any, splits: Any) -> dict[str, Any]:
        """The parent's validation numbers (a pretrained parent evaluated once on the pair's
        validation split, recorded in the run; a cached one from its run), checked before any child trains."""
        from ..folders import parents

        spec = self.spec
        task = spec.manager.lookup("tasks", spec.card.task)
        needs_split = source.source == parents.PRETRAINED or task.primary_metric == "accuracy"
        if splits is None and needs_split:
            splits = self.pair.splits()
        if source.source == parents.PRETRAINED:
            val = evaluate(parent, splits.val, task, batch_size=spec.train.batch_size, device=self.device,
                           manager=spec.manager)
            epochs, how, record = None, f"pretrained weights {source.path}", {"val": val}
        else:
            summary = json.loads((Path(source.path) / files.SUMMARY).read_text(encoding="utf-8"))
            val, epochs, record = summary.get("val", {}), summary.get("epochs"), {}
            how = f"trained {epochs} epoch(s) into {source.path}"
        parents.check_parent(spec.card, val, task, splits.val if splits is not None else None, how=how,
                             epochs=epochs)
        return record

    def ensure_parent(self) -> dict[str, Any]:
        """Train (or find) this run's parent now, without training the run: ``hkt compare`` does
        it once before its workers start. Returns the parent's record (source, path, digests)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(self.spec.train.threads)
        try:
            self._resolve_pair()
            return self._resolve_parent()[1]
        finally:
            torch.set_num_threads(threads)

    def _stored_parent(self) -> dict[str, Any]:
        from ...config import read_toml

        return read_toml(self.spec.out / files.CONFIG).get("parent", {})

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> Path:
        from ...trust import card_origin, scope

        threads = torch.get_num_threads()
        # the run's intra-op thread count (train.threads), whichever command runs it; restored after
        torch.set_num_threads(self.spec.train.threads)
        previous_sigterm = _stop_on_sigterm() if self.world.distributed else None
        try:
            with scope(card_origin(self.spec.card)):
                return self._fit()
        except KeyboardInterrupt:
            raise TrainingInterrupted(f"interrupted: {self._kept_and_resume()}") from None
        except HKTError:
            raise
        except _Terminated:  # the launcher stops the other ranks once one of them has failed
            raise PeerLost(f"another process of this distributed run stopped (the launcher ended this one); "
                           f"{self._kept_and_resume()}") from None
        except (RuntimeError, ConnectionError) as exc:
            if not self.world.distributed:
                raise
            cause = " ".join(str(exc).split())[:160]
            raise PeerLost(f"another process of this distributed run stopped ({type(exc).__name__}: {cause}); "
                           f"{self._kept_and_resume()}") from None
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            for callback in self.spec.callbacks:  # trackers hold files open
                if callable(getattr(callback, "close", None)):
                    callback.close()
            if getattr(self, "_lock", None) is not None:
                self._lock.release()
            close_world(self.world)
            torch.set_num_threads(threads)

    def _kept_and_resume(self) -> str:
        """What the run folder kept, and the command that continues the run."""
        spec = self.spec
        out = spec.out
        try:
            epoch = int(ckpt.read_state(Path(out) / files.STATE)["epoch"])
        except (HKTError, OSError, KeyError, TypeError, ValueError):
            epoch = 0
        if epoch <= 0:
            return f"no epoch had been committed in {out}; start it again with the same command and --force"
        nproc = f" --nproc {self.world.size}" if self.world.size > 1 else ""
        return (f"{out} keeps epoch {epoch} of {spec.train.epochs} (its last checkpoint); continue with: "
                f"hkt train {spec.card.name} --method {spec.method} --out {out}{nproc} --resume")

    def _resolve_pair(self):
        """The run's resolved pair (:class:`~hkt_core.train.setup.resolved.ResolvedPair`): the spec's.
        The setup layer's :class:`~hkt_core.train.setup.training.Trainer` resolves one when none is given."""
        if self.pair is None:
            if self.spec.pair is None:
                raise ConfigError("the training loop trains a resolved pair (RunSpec.pair); "
                                  "hkt_core.train.setup.training.Trainer resolves one from the card")
            self.pair = self.spec.pair
        return self.pair

    def _dry_run(self, alignment: Any) -> Any:
        """The pre-flight's dry run, whose method the run keeps (the setup layer's); None: none."""
        return None

    def _fit(self) -> Path:
        from ...etm.attention import attention_path

        spec = self.spec
        spec.out = Path(broadcast_text(self.world, str(spec.out)))
        resuming = spec.resume and (spec.out / files.STATE).is_file()
        if resuming:   # the numerics switches the run was recorded with (identity.RECORDED)
            from ..folders.identity import recorded_numerics

            spec.train = attrs.evolve(spec.train, **recorded_numerics(spec.out))
        self._resolve_pair()
        with attention_path("fused" if spec.train.fused_attention else "legacy"):
            if spec.preflight:   # the pre-flight builds the method the run keeps, before any folder is touched
                self._dry = self._dry_run(files.read_alignment(spec.out) if resuming else None)
            state = self._prepare_folder()
            return self._fit_prepared(state)

    def _fit_prepared(self, state: dict[str, Any] | None) -> Path:
        task = self.spec.manager.lookup("tasks", self.spec.card.task)
        trains_parent = self.spec.method_cls.trains_parent  # the parent learns from its own data
        splits = self.pair.splits(parent=bool(trains_parent))
        parent, parent_info = self._resolve_parent(splits if not trains_parent else None)
        method = self._method(task, parent, state)
        run = _Session(method=method, task=task, splits=splits, parent=parent, parent_info=parent_info,
                       trainable=method.trainable_module().to(self.device),
                       # a method may replace the network it trains (e.g. a compressed parent)
                       child=method.ctx.child, extra=method.extra_state_module())
        self.accel.prepare(method)
        method.use_forward_context(self.accel.autocast)
        run.optimizer = build_optimizer(run.trainable, self.spec.train)
        self._start_or_resume(run, state)
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            devices = [self.device.index] if self.device.type == "cuda" else None
            method.wrap(DDP(run.trainable, device_ids=devices, output_device=devices[0] if devices else None,
                            find_unused_parameters=method.ddp_find_unused_parameters))
        self._train_split = splits.train
        loader, sampler = train_loader(splits.train, self.spec.train, rank=self.world.rank, world=self.world.size)
        for epoch in range(run.start_epoch, self.spec.train.epochs):
            sampler.set_epoch(epoch)
            started = time.perf_counter()
            train_means = self._train_epoch(run, loader, epoch)
            self._end_epoch(run, epoch, len(loader), train_means, started)
        return self._finish(self.spec.out, run.run_id, method, task, splits, run.best, parent_info)

    # -- the loop's steps ----------------------------------------------------------------------
    def _method(self, task: Any, parent: nn.Module | None, state: dict[str, Any] | None) -> Method:
        """The run's method: the one the pre-flight built (its random state continued), or, without a
        pre-flight, one built now around the pair's network seeded with ``train.seed``.

        A method that mixes records its alignment in ``alignment.json`` and prints the mixing points;
        a resumed run reads the recorded alignment back, so it keeps its mixing points."""
        spec = self.spec
        dry = self._dry
        if dry is not None and dry.alignment_recorded == (state is not None):
            method = dry.method
            ckpt.restore_rng(dry.rng)
        else:
            network = self.pair.seeded("parent" if spec.method_cls.trains_parent else "child",
                                       spec.train.seed).to(self.device)
            method = build_method(spec.method_cls, self.pair, network=network, parent=parent, train=spec.train,
                                  hkt=spec.hkt, task=task, options=spec.method_options, device=self.device,
                                  alignment=files.read_alignment(spec.out) if state else None)
        self._dry = None
        alignment = method.alignment
        if alignment is not None and self.world.main:
            files.write_alignment(spec.out, alignment)
            _say(self.world, f"alignment: {files.mixing_points_line(alignment)}")
        return method

    def _start_or_resume(self, run: _Session, state: dict[str, Any] | None) -> None:
        """A new run writes config.toml under a fresh run id; a resumed one loads its last checkpoint."""
        world, out = self.world, self.spec.out
        if state is None:
            config = self.spec.config()
            config["parent"] = run.parent_info
            config["world_size"] = world.size
            run.run_id = broadcast_text(world, uuid.uuid4().hex)
            config["run"] = run.run_id
            if world.main:
                atomic_write_text(out / files.CONFIG, to_toml(config))
        else:
            run.run_id = state["run"]
            run.start_epoch, run.best = int(state["epoch"]), state.get("best")
            run.global_step = state["step"]
            self._load_checkpoint(state, run.child, run.extra, run.parent, run.optimizer)
        barrier(world)

    def _train_epoch(self, run: _Session, loader, epoch: int) -> dict[str, float]:
        """One pass over the training data; the mean of the loss and the method's logs over all ranks."""
        spec, world, train = self.spec, self.world, self.spec.train
        show = (spec.progress if spec.progress is not None else sys.stderr.isatty()) and world.main
        aug_gen = torch.Generator().manual_seed(train.seed * 1_000_003 + epoch * 7919 + world.rank)
        run.method.on_epoch_start(epoch)
        run.method.train(True)
        sums: dict[str, float] = {}
        seen = 0
        bar = _progress(loader, show, f"epoch {epoch + 1}/{train.epochs}")
        for step, batch in enumerate(bar):
            lr = learning_rate(train, epoch, step, len(loader))
            set_learning_rate(run.optimizer, lr)
            inputs, target = self._augmented(run, batch, aug_gen)
            loss, logs = self._train_step(run, inputs, target, epoch, step)
            n = inputs[0].shape[0]
            seen += n
            sums["loss"] = sums.get("loss", 0.0) + loss * n
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            if show and step % 5 == 0:
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}")
        totals = all_sum(world, torch.tensor([seen, *sums.values()], dtype=torch.float64))
        return {k: float(v / totals[0]) for k, v in zip(sums, totals[1:])}

    def _augmented(self, run: _Session, batch: Any, generator: torch.Generator) -> tuple[tuple, Any]:
        inputs, target = split_batch(batch, self.device)
        augment = run.splits.bundle.augment
        if augment is not None:  # it sees the batch as the data set yields it: one tensor or a tuple
            inputs, target = augment(inputs[0] if len(inputs) == 1 else inputs, target, generator)
            inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        return self.accel.inputs(inputs), target

    def _train_step(self, run: _Session, inputs: tuple, target: Any, epoch: int,
                    step: int) -> tuple[float, dict[str, float]]:
        """One optimiser step (through the method's :meth:`~hkt_core.Method.step` seam); stops the run
        (on every rank) when any rank's loss is not finite."""
        params = [p for p in run.trainable.parameters() if p.requires_grad]

        def update(loss: torch.Tensor) -> None:
            bad = not bool(torch.isfinite(loss.detach()).all())
            if any_flag(self.world, bad):
                self._diverged(float(loss.detach()) if bad else float("nan"), epoch, step, run.start_epoch,
                               run.best, self.spec.out)
            run.optimizer.zero_grad(set_to_none=True)
            self.accel.step(loss, run.optimizer, params)

        result = run.method.step(inputs, target, update)
        run.global_step += 1
        return float(result.loss.detach()), result.logs

    def _end_epoch(self, run: _Session, epoch: int, steps_per_epoch: int, train_means: dict[str, float],
                   started: float) -> None:
        """Validate, keep the best, commit the epoch's checkpoint, call the epoch callbacks."""
        spec, world, train, task = self.spec, self.world, self.spec.train, run.task
        step_seconds = (time.perf_counter() - started) / max(steps_per_epoch, 1)
        deployed = run.method.deployed()
        sync_buffers(world, deployed)
        val = evaluate(deployed, run.splits.val, task, batch_size=train.batch_size, device=self.device,
                       manager=spec.manager, world=world, num_workers=train.num_workers)
        if not math.isfinite(val["loss"]):
            self._diverged(val["loss"], epoch, steps_per_epoch - 1, run.start_epoch, run.best, spec.out,
                           where="validation")
        record = {"epoch": epoch + 1, "step": run.global_step, "lr": learning_rate(train, epoch, 0, steps_per_epoch)}
        record.update({f"train_{k}": v for k, v in train_means.items()})
        record.update({f"val_{k}": v for k, v in val.items()})
        record["seconds"] = round(time.perf_counter() - started, 3)
        record["step_seconds"] = round(step_seconds, 6)
        primary, higher = task.primary_metric, task.higher_is_better
        value = val.get(primary)
        improved = value is not None and math.isfinite(value) and (
            run.best is None or (value > run.best["value"] if higher else value < run.best["value"]))
        if improved:
            run.best = {"epoch": epoch + 1, "metric": primary, "value": value, "higher_is_better": higher,
                        "val": val}
        self._check_sane(run, epoch, steps_per_epoch)
        if world.main:
            self._save_checkpoint(spec.out, run.run_id, epoch + 1, run.global_step, run.child, run.extra,
                                  run.parent, run.optimizer, record, run.best, improved)
            log.info(_epoch_line(record, primary))
        barrier(world)
        for callback in spec.callbacks:
            callback(epoch + 1, record)

    def _check_sane(self, run: _Session, epoch: int, steps_per_epoch: int) -> None:
        """No checkpoint of a network holding non-finite or overflowing tensors (``integrity``)."""
        from ..folders.integrity import insane_tensors

        excluded = [m for m in (run.child, run.parent) if m is not None]
        states = [run.child.state_dict()]
        if run.extra is not None:
            states.append(ckpt.module_extra_state(run.extra, *excluded))
        bad = insane_tensors(*states)
        if any_flag(self.world, bool(bad)):
            self._diverged(float("inf"), epoch, steps_per_epoch - 1, run.start_epoch, run.best, self.spec.out,
                           where=f"network's state ({', '.join(bad[:3]) or 'on another rank'})")

    def _diverged(self, value: float, epoch: int, step: int, start_epoch: int, best, out: Path,
                  where: str = "training loss") -> None:
        if where == "training loss":  # data that is not finite is the data's fault, not the learning rate's
            from .data import check_finite

            check_finite(self.spec.card.dataset, "train", self._train_split)
        committed = epoch  # epochs completed before this one
        kept = (f"the last good checkpoint (epoch {committed}) is kept in {out}" if committed > 0
                else "no checkpoint had been written yet")
        raise TrainingDiverged(
            f"the {where} is {value} at epoch {epoch + 1}, step {step + 1}: training stopped; {kept}. Try a lower "
            f"learning rate (--lr) or gradient clipping (--set train.grad_clip=1.0), then --resume or --force")

    def _save_checkpoint(self, out: Path, run_id: str, epoch: int, step: int, child: nn.Module,
                         extra: nn.Module | None, parent: nn.Module | None, optimizer, record, best, improved) -> None:
        meta = {"run": run_id, "epoch": epoch, "pair": self.spec.card.name, "method": self.spec.method}
        child_state = child.state_dict()
        ckpt.stage(out / files.LAST, child_state, kind="child", metadata=meta)
        if improved:
            ckpt.stage(out / files.BEST, child_state, kind="child", metadata=meta)
        opt_tensors, opt_info = ckpt.optimizer_to_files(optimizer)
        ckpt.stage(out / files.OPTIMIZER, opt_tensors, kind="optimizer", metadata=meta)
        if extra is not None:
            excluded = [m for m in (child, parent) if m is not None]
            ckpt.stage(out / files.METHOD_STATE, ckpt.module_extra_state(extra, *excluded), kind="method",
                       metadata=meta)
        _rewrite_metrics(out, epoch - 1, record)
        state = {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "run": run_id, "epoch": epoch,
                 "epochs": self.spec.train.epochs, "step": step, "best": best,
                 "sampler": {"seed": self.spec.train.seed, "epoch": epoch, "batches_done": 0},
                 "world_size": self.world.size, "optimizer": opt_info, "rng": ckpt.capture_rng()}
        if self.accel.state_dict() is not None:
            state["scaler"] = self.accel.state_dict()  # fp16: the loss scale, for an exact resume
        ckpt.commit(out / files.STATE, state)

    def _load_checkpoint(self, state, child, extra, parent, optimizer) -> None:
        from ..folders.integrity import verify

        out, run_id, epoch = self.spec.out, state["run"], int(state["epoch"])
        for name in (files.LAST, files.OPTIMIZER) + ((files.METHOD_STATE,) if extra is not None else ()):
            verify(out / name, run_id=run_id, state=state)
        tensors, meta = ckpt.read_tensors(out / files.LAST, what="checkpoint")
        ckpt.check_epoch(meta, epoch, run_id, out / files.LAST)
        ckpt.check_state(child, tensors, what="this run's network", source=str(out / files.LAST))
        with torch.no_grad():
            current = child.state_dict()
            for k, v in tensors.items():
                current[k].copy_(v)
        if extra is not None:
            excluded = [m for m in (child, parent) if m is not None]
            target = ckpt.module_extra_state(extra, *excluded)
            tensors, meta = ckpt.read_tensors(out / files.METHOD_STATE, what="method state")
            ckpt.check_epoch(meta, epoch, run_id, out / files.METHOD_STATE)
            if set(tensors) != set(target) or any(tuple(tensors[k].shape) != tuple(target[k].shape) for k in target):
                raise CheckpointError(f"{out / files.METHOD_STATE} does not fit this method's trainable operators")
            with torch.no_grad():
                for k, v in tensors.items():
                    target[k].copy_(v)
        tensors, meta = ckpt.read_tensors(out / files.OPTIMIZER, what="optimizer state")
        ckpt.check_epoch(meta, epoch, run_id, out / files.OPTIMIZER)
        decay = [g["weight_decay"] for g in optimizer.param_groups]  # this run's, possibly changed on --resume
        ckpt.optimizer_from_files(optimizer, {k: v.to(self.device) for k, v in tensors.items()},
                                  state["optimizer"], source=str(out / files.OPTIMIZER))
        for group, value in zip(optimizer.param_groups, decay):
            group["weight_decay"] = value
        ckpt.restore_rng(state["rng"])
        self.accel.load_state_dict(state.get("scaler"))
        if self.world.main:
            _rewrite_metrics(out, epoch, None)

    def _finish(self, out: Path, run_id: str, method: Method, task, splits: Splits, best, parent_info) -> Path:
        spec, world, device, train = self.spec, self.world, self.device, self.spec.train
        deployed = method.deployed()
        self.accel.finish()
        barrier(world)
        if best is None:
            raise TrainingDiverged(f"no epoch produced a finite validation {task.primary_metric}; nothing to keep")
        from ..folders.integrity import verify

        verify(out / files.BEST, run_id=run_id)
        tensors, meta = ckpt.read_tensors(out / files.BEST, what="best checkpoint")
        if meta.get("run") != run_id:
            raise CheckpointError(f"{out / files.BEST} belongs to another run")
        ckpt.check_state(method.ctx.child, tensors, what="this run's network", source=str(out / files.BEST))
        with torch.no_grad():
            current = method.ctx.child.state_dict()
            for k, v in tensors.items():
                current[k].copy_(v)
        test = evaluate(deployed, splits.test, task, batch_size=train.batch_size, device=device,
                        manager=spec.manager, world=world, num_workers=train.num_workers)
        if world.main:
            summary = {
                "pair": spec.card.name, "method": spec.method, "seed": train.seed, "epochs": train.epochs,
                "best_epoch": best["epoch"], "primary_metric": task.primary_metric,
                "higher_is_better": task.higher_is_better, "val": best["val"], "test": test,
                "parameters": count_parameters(deployed),
                "latency_ms_per_sample": measure_latency(deployed, spec.card.input_shapes, device=device,
                                                          manager=spec.manager, dtypes=spec.card.input_dtypes),
                "latency_batch": 32, "device": str(device), "world_size": world.size,
                "train_seconds": round(sum(r.get("seconds", 0.0) for r in files.read_metrics(out)), 3),
                "parent": parent_info,
                **self.accel.summary(),
            }
            atomic_write_text(out / files.SUMMARY, json.dumps(summary, indent=1))
            from ..folders.plots import plot_curves

            plot_curves(out, task.primary_metric)
            if spec.method_cls.trains_parent:
                from ..folders.parents import publish_parent_run

                published = publish_parent_run(spec.card, spec.train, out, spec.manager)
                if published is not None:
                    _say(world, f"parent cached in {published}")
        barrier(world)
        return out


def _rewrite_metrics(out: Path, keep_epochs: int, record: dict[str, Any] | None) -> None:
    """metrics.jsonl holding the records of epochs <= ``keep_epochs`` (plus ``record``), atomically."""
    records = [r for r in files.read_metrics(out) if int(r.get("epoch", 0)) <= keep_epochs]
    if record is not None:
        records.append(record)
    atomic_write_text(out / files.METRICS, "".join(json.dumps(r) + "\n" for r in records))


def _epoch_line(record: dict[str, Any], primary: str) -> str:
    keys = ["train_loss", "val_loss", f"val_{primary}"]
    shown = "  ".join(f"{k} {record[k]:.4f}" for k in keys if k in record)
    return f"epoch {record['epoch']}: {shown}  ({record['seconds']:.1f}s)"


def _progress(iterable, show: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not show, leave=False, dynamic_ncols=True, file=sys.stderr)
