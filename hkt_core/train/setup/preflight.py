"""Pre-flight of a pair: everything that can be wrong between a card, its models and its data,
found in seconds on the CPU before any run folder exists.

:func:`check_pair` builds both models, loads one small batch of every split, checks the input
shapes, the class count (``info["num_classes"]`` of the data set) and the output shapes against
the data set, scores both models with the task's loss, then builds every requested method as the
trainer would (HKT traces, aligns and builds its :class:`~hkt_core.Family`) and runs one training
step with one optimiser step. A problem raises :class:`PairCheckError`: one line that names the
problem and the fix. ``hkt pairs check`` prints the :class:`PairReport`; ``hkt train`` runs the
same check for the method it trains before it creates the run folder.

Which methods apply: a method whose constructor refuses the pair with a framework error (an
InherNet budget the child cannot meet, say) *does not apply*; it is listed with its reason, and so
is a method that is not required and fails on the pair in any other way. The methods in
``required`` (the one ``hkt train`` was asked for; for ``hkt pairs check`` the core's ``parent``,
``baseline``, ``kd`` and ``hkt``) must apply: their refusal or failure is the pair's problem.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch
from torch import nn
from torch.utils.data import default_collate

from ...adapters import adapter_for
from ...config import HKTConfig, TrainConfig
from ...errors import ConfigError, HKTError
from ...models import build_model, count_parameters
from ...pairs.card import PairCard
from ...trust import card_origin, scope
from ..folders.checkpoint import capture_rng, restore_rng
from ..folders.files import mixing_points_line
from ..methods.registry import methods_with_role
from .resolved import ResolvedPair, resolve_pair

if TYPE_CHECKING:
    from ...plugins.host import PluginManager

#: samples per split the check runs on (>1: normalisation layers need a batch in training mode)
CHECK_BATCH = 2
#: the methods every pair must support
CORE_METHODS = methods_with_role("every-pair")
SPLITS = ("train", "val", "test")


class PairCheckError(ConfigError):
    """A pair cannot train as configured; the message names the problem and the fix in one line.

    ``stage`` says where the check stopped: ``data``, ``models`` or ``methods``."""

    def __init__(self, message: str, stage: str = "models", problem: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.problem = problem or message


@attrs.frozen
class MethodResult:
    """One method's pre-flight: ``applies`` with the loss of its step, or the reason it does not."""

    name: str
    applies: bool
    detail: str
    loss: float | None = None


@attrs.frozen
class PairReport:
    """What :func:`check_pair` found (all of it passed)."""

    pair: str
    samples: dict[str, int]
    input_shapes: tuple[tuple[int, ...], ...]
    num_classes: int | None
    parent: str
    child: str
    parent_parameters: int
    child_parameters: int
    prediction_shape: tuple[int, ...]
    methods: tuple[MethodResult, ...]
    alignment: Any = None  # the Alignment the HKT method used, when it ran
    seconds: float = 0.0
    splits: Any = attrs.field(default=None, eq=False, repr=False)

    def lines(self) -> list[str]:
        """The short report ``hkt pairs check`` prints."""
        shapes = ", ".join(str(s) for s in self.input_shapes)
        classes = f", {self.num_classes} classes" if self.num_classes is not None else ""
        out = [f"pair {self.pair}: ok ({self.seconds:.1f} s on the CPU)",
               f"  data       {self.samples['train']} train / {self.samples['val']} val / {self.samples['test']} test "
               f"samples, inputs {shapes} per sample{classes}",
               f"  parent     {self.parent}: {self.parent_parameters:,} parameters",
               f"  child      {self.child}: {self.child_parameters:,} parameters",
               f"  outputs    {list(self.prediction_shape)} for a batch of {self.prediction_shape[0]}"]
        if self.alignment is not None:
            out.append(f"  alignment  {mixing_points_line(self.alignment)}")
        ok = [m for m in self.methods if m.applies]
        out.append("  methods    " + ", ".join(f"{m.name} (loss {m.loss:.4g})" for m in ok) + " ran one step")
        for m in self.methods:
            if not m.applies:
                out.append(f"  not apply  {m.name}: {m.detail}")
        return out


#: the names a model factory's class-count option goes by, in the order they are looked for
CLASS_COUNT_OPTIONS = ("num_classes", "classes", "n_classes", "num_labels", "num_outputs", "n_outputs",
                       "out_features", "outputs")


def factory_options(ref: str, manager) -> list[str]:
    """The keyword options of a model factory (a registered name or module:callable), from its
    signature; empty when it cannot be read."""
    import inspect

    try:
        if ":" in ref:
            from ...models import resolve_callable

            factory = resolve_callable(ref)
        else:
            factory = manager.lookup("models", ref)
        signature = inspect.signature(factory)
    except Exception:  # the fix is a hint: an unreadable factory only makes it vaguer
        return []
    return [p.name for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if not isinstance(exc, HKTError) else first


class _Check:
    """The state of one check of a :class:`~hkt_core.train.setup.resolved.ResolvedPair`; each step
    raises :class:`PairCheckError` with its own fix."""

    def __init__(self, pair: ResolvedPair, train: TrainConfig, hkt: HKTConfig,
                 device: torch.device | None = None) -> None:
        self.pair, self.card, self.manager, self.train, self.hkt = pair, pair.card, pair.manager, train, hkt
        self.device = device if device is not None else torch.device("cpu")
        self.task = self.manager.lookup("tasks", self.card.task)

    def fail(self, problem: str, fix: str, stage: str = "models") -> PairCheckError:
        return PairCheckError(f"pair {self.card.name!r}: {problem}; fix: {fix}", stage, problem)

    # -- data --------------------------------------------------------------------------------
    def data(self):
        from ...errors import DataError
        from ..loop.data import SplitError, check_finite_batch, dataset_factory

        try:
            dataset_factory(self.card.dataset, self.manager)
        except HKTError as exc:
            raise self.fail(_one_line(exc), "name a registered data set (`hkt list datasets`) or a module:callable "
                            "whose module lies beside the card or on sys.path", "data") from None
        from ...data import SampleFormError

        try:
            splits = self.pair.splits()
        except SampleFormError as exc:
            raise self.fail(_one_line(exc), "give every sample the keys the message names, or state them in the "
                            "DatasetBundle's info['input_keys'] and info['target_key']", "data") from None
        except DataError as exc:
            raise self.fail(_one_line(exc), "repair or drop the samples holding NaN or infinity", "data") from None
        except SplitError as exc:
            raise self.fail(_one_line(exc), "set train.val_fraction or train.train_samples within the limit "
                            "the message names ([train] of the card, or --set train.KEY=VALUE)", "data") from None
        except HKTError as exc:
            raise self.fail(_one_line(exc), "make the card's input_shapes and dataset options match the data set "
                            "(`hkt pairs new` writes them from the data set)", "data") from None
        except Exception as exc:  # a user's data set may fail in any way
            raise self.fail(f"data set {self.card.dataset!r} failed to load ({_one_line(exc)})",
                            "call the data set factory on its own and correct it or its [dataset_options]", "data") from None
        batches = {}
        for name in SPLITS:
            dataset = getattr(splits, name)
            if len(dataset) == 0:
                raise self.fail(f"the {name} split of data set {self.card.dataset!r} is empty",
                                "give the data set samples in every split", "data")
            try:
                batches[name] = default_collate([dataset[i] for i in range(min(CHECK_BATCH, len(dataset)))])
            except Exception as exc:
                raise self.fail(f"the {name} split of data set {self.card.dataset!r} cannot be batched "
                                f"({_one_line(exc)})", "yield (inputs, target) with tensors of one shape per "
                                "sample", "data") from None
            self._check_split_shapes(name, batches[name])
            try:
                check_finite_batch(self.card.dataset, name, batches[name])  # the samples just batched
            except DataError as exc:
                raise self.fail(_one_line(exc), "repair or drop the samples holding NaN or infinity", "data") from None
        return splits, batches

    def _check_split_shapes(self, name: str, batch) -> None:
        inputs = batch[0] if isinstance(batch[0], (tuple, list)) else (batch[0],)
        got = tuple(tuple(t.shape[1:]) for t in inputs)
        expected = tuple(tuple(s[1:]) for s in self.card.input_shapes)
        if got != expected:
            raise self.fail(f"the {name} split yields inputs of shape {got} per sample but the card's input_shapes "
                            f"say {expected}", "make every split yield the card's input shapes")

    # -- models ------------------------------------------------------------------------------
    def build(self, role: str, *, fresh: bool = False, seed: int | None = None) -> nn.Module:
        """The pair's ``role`` model (``seed``: built under that seed; ``fresh``: a new one, not the pair's)."""
        ref, options = self.pair.reference(role)
        try:
            if fresh:
                return build_model(ref, self.manager, **options)
            return self.pair.model(role) if seed is None else self.pair.seeded(role, seed)
        except HKTError as exc:
            raise self.fail(f"the {role} cannot be built: {_one_line(exc)}",
                            f"correct the card's {role} or [{role}_options]") from None
        except Exception as exc:  # the user's constructor
            raise self.fail(f"the {role} {ref!r} failed to build ({_one_line(exc)})",
                            f"correct the model or the card's [{role}_options]") from None

    def class_count_fix(self, role: str, ref: str, classes: int) -> str:
        """The fix for a wrong class count, naming the factory's own option (read from its signature)."""
        options = factory_options(ref, self.manager)
        named = next((o for o in CLASS_COUNT_OPTIONS if o in options), None)
        if named is not None:
            return f"build the {role} with {classes} outputs: [{role}_options] {named} = {classes}"
        takes = f"its options: {', '.join(options)}" if options else "it takes no keyword options"
        return (f"build the {role} with {classes} outputs: its factory {ref!r} has no class-count option "
                f"({takes}); change the model, or give it one")

    def predict(self, role: str, model: nn.Module, batch, info: dict[str, Any]) -> torch.Tensor:
        from ..loop.data import split_batch

        inputs, target = split_batch(batch, self.device)
        ref = self.card.parent if role == "parent" else self.card.child
        shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                prediction = adapter_for(model, self.manager).prediction(model(*inputs))
        except Exception as exc:
            raise self.fail(f"the {role} {ref!r} fails on a batch of the data set's inputs {shapes} "
                            f"({_one_line(exc)})", f"make the {role} take inputs of the card's input_shapes "
                            f"{[list(s) for s in self.card.input_shapes]}") from None
        finally:
            model.train(was)
        classes = info.get("num_classes")
        if isinstance(classes, int) and prediction.dim() >= 2 and prediction.shape[1] != classes:
            raise self.fail(f"the {role} {ref!r} predicts {prediction.shape[1]} classes but data set "
                            f"{self.card.dataset!r} has {classes} classes (info['num_classes'])",
                            self.class_count_fix(role, ref, classes))
        try:
            loss = self.task.loss(prediction, target)
            bad = not math.isfinite(float(loss))
        except Exception as exc:
            raise self.fail(f"task {self.card.task!r} cannot score the {role}'s predictions "
                            f"{list(prediction.shape)} against the data set's targets "
                            f"{_shape_of(target)} ({_one_line(exc)})",
                            f"make the {role}'s output and the data set's targets fit task {self.card.task!r}") from None
        if bad:
            raise self.fail(f"the {role}'s task loss on the first batch is not finite",
                            f"check the data set's values and the {role}'s output")
        return prediction

    # -- methods -----------------------------------------------------------------------------
    def method_step(self, name: str, parent: nn.Module, batch, options: dict[str, Any], augment,
                    required: bool) -> tuple[MethodResult, Any]:
        """One step of method ``name`` on a network of its own. A method that is not ``required``
        and fails in any way does not apply (listed with the reason); a required one fails the check."""
        try:
            method_cls = self.manager.lookup("methods", name)
            network = self.build("parent" if method_cls.trains_parent else "child", fresh=True)
            method = self.start(name, network, parent, options)
            if isinstance(method, MethodResult):
                return method, None
            return self.step(name, method, batch, augment), method.alignment
        except PairCheckError as exc:
            if required:
                raise
            return MethodResult(name, False, f"failed on this pair: {exc.problem}"), None

    def start(self, name: str, network: nn.Module, parent: nn.Module | None, options: dict[str, Any],
              alignment: Any = None):
        """Method ``name`` built around ``network`` exactly as the trainer builds it
        (:func:`~hkt_core.train.methods.build.build_method`), or the :class:`MethodResult` saying why it
        does not apply to this pair."""
        from ..methods.build import build_method

        method_cls = self.manager.lookup("methods", name)
        try:
            return build_method(method_cls, self.pair, network=network, parent=parent, train=self.train,
                                hkt=self.hkt, task=self.task, options=options, device=self.device,
                                alignment=alignment)
        except HKTError as exc:
            return MethodResult(name, False, _one_line(exc))
        except Exception as exc:
            raise self.fail(f"method {name!r} failed to start on this pair ({_one_line(exc)})",
                            "correct the models or report the method's failure to its plugin", "methods") from None

    def step(self, name: str, method, batch, augment) -> MethodResult:
        """One training step with one optimiser step of a built method; the trainable weights and
        buffers are put back as they were afterwards, and the step runs on a shallow copy of the
        method, so what the method counts on itself (steps seen, say) starts from zero in the run."""
        import copy

        trainable = method.trainable_module()
        extra = method.extra_state_module()
        kept = [(m, copy.deepcopy(m.state_dict())) for m in (trainable, extra) if m is not None]
        try:
            return self._step(name, copy.copy(method), batch, augment)
        finally:
            for module, state in kept:
                module.load_state_dict(state)

    def _step(self, name: str, method, batch, augment) -> MethodResult:
        from ..loop.data import split_batch
        from ..loop.optim import build_optimizer

        inputs, target = split_batch(batch, self.device)
        try:
            if augment is not None:
                inputs, target = augment(inputs[0] if len(inputs) == 1 else inputs, target,
                                         torch.Generator().manual_seed(0))
                inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
            trainable = method.trainable_module()
            if not any(p.requires_grad for p in trainable.parameters()):
                raise self.fail(f"method {name!r} has nothing to train: {type(trainable).__name__} has no parameter "
                                f"that requires a gradient", "give the model trainable parameters (a model whose "
                                "parameters are all frozen, or that has none, cannot learn)", "methods")
            optimizer = build_optimizer(trainable, self.train)
            method.train(True)

            def update(loss: torch.Tensor) -> None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            result = method.step(inputs, target, update)
            loss = float(result.loss.detach())
        except PairCheckError:
            raise
        except HKTError as exc:
            raise self.fail(f"method {name!r}: {_one_line(exc)}", "see the message; `hkt align` shows the "
                            "alignment, [alignment] in the card sets it by hand", "methods") from None
        except Exception as exc:
            raise self.fail(f"one training step of method {name!r} failed ({_one_line(exc)})",
                            "make the models' outputs and the data set's targets fit the task", "methods") from None
        if not math.isfinite(loss):
            raise self.fail(f"method {name!r}'s loss on the first batch is {loss}",
                            "the data's values are finite, so the step itself overflows: lower the learning rate "
                            "or check the models' initialisation", "methods")
        return MethodResult(name, True, "one step", loss)


def _shape_of(value) -> str:
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_shape_of(v) for v in value) + ")"
    return type(value).__name__


def check_pair(card: PairCard | str | ResolvedPair, *, manager: PluginManager | None = None,
               train: TrainConfig | None = None, hkt: HKTConfig | None = None,
               methods: Sequence[str] | None = None, required: Sequence[str] | None = None,
               method_options: dict[str, dict[str, Any]] | None = None) -> PairReport:
    """Check that ``card`` (a :class:`PairCard`, a registered pair's name or a
    :class:`~hkt_core.train.setup.resolved.ResolvedPair`) can train; see the module docstring.
    ``methods`` defaults to every registered method; ``required`` (default: the core's methods)
    must apply. Raises :class:`PairCheckError` naming the problem and the fix. The caller's random
    state is left as it was."""
    from ...plugins.host import resolve_manager

    if isinstance(card, ResolvedPair):
        pair = card
        manager = pair.manager
    else:
        manager = resolve_manager(manager)
        pair = resolve_pair(card, manager, train=train, hkt=hkt)
    card = pair.card
    train = train or pair.train
    hkt = hkt or card.hkt
    names = list(methods) if methods is not None else manager.registry("methods").names()
    required = set(CORE_METHODS if required is None else required)
    started = time.perf_counter()
    state = (random.getstate(), np.random.get_state())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            with scope(card_origin(card)):  # the card's module:callable references, beside it included
                report = _run(_Check(pair, train, hkt), names, required, method_options or {})
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])
    return attrs.evolve(report, seconds=time.perf_counter() - started)


def _run(check: _Check, names: list[str], required: set[str], method_options) -> PairReport:
    splits, batches = check.data()
    info = dict(splits.bundle.info or {})
    parent, child = check.build("parent"), check.build("child")
    report = _check_models(check, parent, child, splits, batches, info)
    parent.requires_grad_(False).eval()
    results, alignment = [], None
    for name in names:
        result, used = check.method_step(name, parent, batches["train"], dict(method_options.get(name, {})),
                                         splits.bundle.augment, name in required)
        if not result.applies and name in required:
            raise check.fail(f"method {name!r} cannot train this pair: {result.detail}",
                             "correct the models or the card, or pick another method", "methods")
        alignment = used if used is not None else alignment
        results.append(result)
    return attrs.evolve(report, methods=tuple(results), alignment=alignment)


@attrs.frozen
class DryRun:
    """What :func:`dry_run` found and built: the report, the run's method (built once, around the
    pair's seeded network; its weights as they were before the checked step) and the random state
    right after the method was built (the trainer continues from it)."""

    report: PairReport
    method: Any
    rng: dict[str, Any] = attrs.field(eq=False, repr=False)   # checkpoint.capture_rng()
    alignment_recorded: bool = False


def dry_run(spec, pair: ResolvedPair, *, device: torch.device | None = None, alignment: Any = None) -> DryRun:
    """The trainer's pre-flight: the checks of :func:`check_pair` for the run's method, on the
    run's own pair, with the method built exactly once, as the run will use it.

    The frozen parent is built first (its weights are replaced by the trained ones later), then the
    network the method trains under ``train.seed``, then the method (``alignment``: the one a resumed
    run recorded). One training step and one optimiser step run on it, and its weights and buffers
    are put back afterwards. The caller's random state is left as it was."""
    started = time.perf_counter()
    train, hkt = spec.train, spec.hkt
    method_cls = spec.method_cls
    state = (random.getstate(), np.random.get_state())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            with scope(card_origin(pair.card)):
                check = _Check(pair, train, hkt, device)
                splits, batches = check.data()
                info = dict(splits.bundle.info or {})
                trains_parent = bool(method_cls.trains_parent)
                parent = check.build("parent") if not trains_parent else None
                network = check.build("parent" if trains_parent else "child", seed=train.seed)
                if trains_parent:
                    parent = network
                rng_before = capture_rng()   # the method is built from the state right after the network
                child = check.build("child")
                report = _check_models(check, parent, child, splits, batches, info)
                if not trains_parent:
                    parent.requires_grad_(False).eval()
                restore_rng(rng_before)
                network.to(check.device)
                frozen = parent.to(check.device) if method_cls.needs_parent else None
                method = check.start(spec.method, network, frozen, dict(spec.method_options), alignment)
                if isinstance(method, MethodResult):
                    raise check.fail(f"method {spec.method!r} cannot train this pair: {method.detail}",
                                     "correct the models or the card, or pick another method", "methods")
                rng = capture_rng()
                result = check.step(spec.method, method, batches["train"], splits.bundle.augment)
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])
    report = attrs.evolve(report, methods=(result,), alignment=method.alignment,
                          seconds=time.perf_counter() - started)
    return DryRun(report, method, rng, alignment_recorded=alignment is not None)


def _check_models(check: _Check, parent: nn.Module, child: nn.Module, splits, batches, info) -> PairReport:
    """Both models take the data's inputs, predict its class count and the same shape."""
    card = check.card
    pp = check.predict("parent", parent, batches["train"], info)
    pc = check.predict("child", child, batches["train"], info)
    if pp.shape != pc.shape:
        if pp.dim() == pc.dim() >= 3 and pp.shape[:-1] == pc.shape[:-1]:
            # one score per position over a vocabulary (a language model's tokens): the vocabularies differ
            raise check.fail(f"the parent scores {pp.shape[-1]} entries per position but the child {pc.shape[-1]} "
                             f"(prediction shapes {list(pp.shape)} and {list(pc.shape)}): their vocabularies (or "
                             f"class counts) differ", "give both models the same vocabulary and tokenizer "
                             "(the same vocab_size), or the same class count")
        raise check.fail(f"the parent predicts {list(pp.shape)} but the child {list(pc.shape)} for the same batch",
                         "give both models the same output (the same class count or target layout)")
    check.predict("child", child, batches["test"], info)  # val is carved from train
    classes = info.get("num_classes")
    return PairReport(pair=card.name, samples={s: len(getattr(splits, s)) for s in SPLITS},
                      input_shapes=tuple(tuple(s[1:]) for s in card.input_shapes),
                      num_classes=classes if isinstance(classes, int) else None,
                      parent=card.parent, child=card.child, parent_parameters=count_parameters(parent),
                      child_parameters=count_parameters(child), prediction_shape=tuple(pc.shape),
                      methods=(), splits=splits)


def needs_user_folder(card: PairCard, manager) -> bool:
    """True when the card's registered data set reads a user's directory (a ``root`` option) and
    the card gives none: it is then given at training time (``--set dataset.root=DIR``)."""
    import inspect

    if "root" in card.dataset_options or ":" in card.dataset or card.dataset not in manager.registry("datasets"):
        return False
    try:
        return "root" in inspect.signature(manager.lookup("datasets", card.dataset)).parameters
    except (TypeError, ValueError):
        return False


def check_outputs(card: PairCard, manager) -> None:
    """What ``hkt pairs add`` checks with data: the data set loads, and both models take its inputs
    and predict its class count and the same shape (no training step). A data set that reads a
    user's directory the card does not name is left to the pre-flight of ``hkt train``."""
    try:
        check_pair(card, manager=manager, methods=[], required=[])
    except PairCheckError as exc:
        if exc.stage == "data" and needs_user_folder(card, manager):
            return
        raise
