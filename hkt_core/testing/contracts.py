"""Contract checks every registered object of a kind must pass.

Plugin authors call them from their own tests (``contracts.check_all("mixtures")`` runs the check
over everything registered in the environment, their plugin included); the core's test suite runs
them over every registration. A check raises ``AssertionError`` naming the entry and the broken
promise. Inputs are small and seeded, so each check takes milliseconds to a few seconds.

What each kind promises:

- **transfers**: ``cls(source_shape, target_shape)`` (shapes without the batch dimension) either
  builds a module mapping ``(B, *source)`` to ``(B, *target)``, differentiable and deterministic
  under a seed, or refuses the pair with a ``ValueError`` whose message names the shapes.
- **mixtures**: ``cls(lam=..., tokens=...)`` builds a module; ``mix(receiver, donor)`` (its value, when
  it returns ``MixOutput(value, loss)``) keeps the receiver's shape for maps ``(B, C, H, W)`` and
  vectors ``(B, C)``, is finite, lets gradients reach the receiver, and is deterministic; a feature
  loss is a finite scalar. A donor of another shape is refused with a ``ValueError``.
- **extractors**: ``cls()`` builds a module; ``extract(*values)`` returns one tensor that carries
  gradients back to its inputs.
- **losses** (tasks): ``task.example(batch_size, generator)`` gives a prediction and a target;
  ``loss``, ``inherit_loss`` and ``distill_loss`` return finite scalars with gradients reaching the
  prediction (never the teacher); metrics return 1-D sums and a float; a mismatched target is
  refused with a ``ValueError``; ``primary_metric`` is one of the task's metrics.
- **metrics**: ``stats`` sums add up: the stats of two halves equal the stats of the whole.
- **datasets**: ``factory(**contract_options)`` (``registry.add(..., contract_options={...})`` gives
  small sizes) returns a :class:`~hkt_core.data.DatasetBundle` whose samples match
  ``input_shapes`` and are the same on a second call; a data set that reads a user's directory
  and is called without one raises an error saying what it expected.
- **adapters**: ``example_inputs`` has the requested shapes and is deterministic; ``prediction``
  of a tensor is that tensor; declared blocks of a model it claims exist in the model's trace.
- **methods**: built with a tiny context, one ``training_step`` gives a finite scalar whose
  gradients reach the child and an optimiser step changes it, while the parent gets no gradient
  and stays bitwise unchanged.
- **models**: ``factory(**contract_options)`` builds an ``nn.Module`` that traces, and the
  blocks its adapter declares exist in the trace. With input shapes (``registry.add(...,
  input_shapes=[[1, 3, 32, 32]])``, else those of the first registered pair that uses the model,
  with that card's options) it also runs on example inputs, is traced with shapes and gives a
  prediction tensor with the batch first.
- **pairs**: :func:`hkt_core.check_pair` passes for ``baseline`` and ``hkt`` (both models build,
  the data set's shapes and class count fit, the pair aligns, the Family builds, one training step
  each), with the data set's ``contract_options`` over the card's options (small sizes). A pair whose data set reads a user's directory is checked without data: both models
  build and give predictions of one shape on example inputs, the pair aligns and its Family runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import HKTError
from ..etm.mixtures import split_mix

CHECKED_KINDS = ("transfers", "mixtures", "extractors", "tasks", "metrics", "datasets", "adapters", "methods",
                 "models", "pairs")


def _manager(manager=None):
    from ..plugins.host import resolve_manager

    return resolve_manager(manager)


def _finite_scalar(value: Any, what: str) -> None:
    assert isinstance(value, torch.Tensor) and value.dim() == 0, f"{what} must be a 0-d tensor, got {value!r}"
    assert math.isfinite(float(value.detach())), f"{what} is not finite: {float(value.detach())}"


# -- transfers ---------------------------------------------------------------------------------
TRANSFER_SHAPES = [((8, 6, 6), (8, 6, 6)), ((8, 6, 6), (4, 3, 3)), ((16,), (8,)), ((12,), (12,)),
                   ((5, 16), (5, 8)), ((8, 6, 6), (16,)), ((16,), (8, 6, 6))]


def check_transfer(name: str, cls: Any) -> None:
    built = 0
    for source, target in TRANSFER_SHAPES:
        torch.manual_seed(0)
        try:
            op = cls(source, target)
        except (ValueError, HKTError) as exc:
            assert str(exc).strip(), f"transfer {name!r} refused {source}->{target} without a reason"
            continue
        built += 1
        assert isinstance(op, nn.Module), f"transfer {name!r} must build an nn.Module"
        x = torch.randn(3, *source, requires_grad=True)
        y = op(x)
        assert tuple(y.shape) == (3, *target), f"transfer {name!r}: {source}->{target} gave {tuple(y.shape)}"
        y.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), f"transfer {name!r}: no gradient to its input"
        torch.manual_seed(0)
        again = cls(source, target)
        assert torch.equal(again(x.detach()), op(x.detach())), f"transfer {name!r} is not deterministic under a seed"
    assert built, f"transfer {name!r} refused every shape pair it was offered"


# -- mixtures ----------------------------------------------------------------------------------
def check_mixture(name: str, cls: Any) -> None:
    for shape in [(2, 4, 3, 3), (2, 6)]:
        torch.manual_seed(0)
        mix = cls(lam=0.6, tokens="auto")
        assert isinstance(mix, nn.Module), f"mixture {name!r} must build an nn.Module"
        receiver = torch.randn(*shape, requires_grad=True)
        donor = torch.randn(*shape)
        out, loss = split_mix(mix(receiver, donor))
        assert tuple(out.shape) == shape, f"mixture {name!r}: receiver {shape} came back as {tuple(out.shape)}"
        assert torch.isfinite(out).all(), f"mixture {name!r} produced non-finite values"
        assert loss is None or (loss.dim() == 0 and torch.isfinite(loss)), \
            f"mixture {name!r}: a feature loss must be a finite scalar"
        (out.sum() + (loss if loss is not None else 0.0)).backward()
        assert receiver.grad is not None, f"mixture {name!r}: gradients must reach the receiver"
        torch.manual_seed(0)
        again = cls(lam=0.6, tokens="auto")
        first, second = split_mix(again(receiver.detach(), donor)), split_mix(mix(receiver.detach(), donor))
        assert torch.equal(first[0], second[0]) and (first[1] is None) == (second[1] is None) and (
            first[1] is None or torch.equal(first[1], second[1])), f"mixture {name!r} is not deterministic under a seed"
    torch.manual_seed(0)
    mix = cls(lam=0.6, tokens="auto")
    try:
        mix(torch.randn(2, 4, 3, 3), torch.randn(2, 5, 3, 3))
    except (ValueError, HKTError) as exc:
        assert str(exc).strip(), f"mixture {name!r} refused mismatched shapes without a reason"
    else:
        raise AssertionError(f"mixture {name!r} accepted a donor of another shape; it must raise ValueError")


# -- extractors --------------------------------------------------------------------------------
def check_extractor(name: str, cls: Any) -> None:
    op = cls()
    assert isinstance(op, nn.Module), f"extractor {name!r} must build an nn.Module"
    a = torch.randn(2, 4, 4, 4, requires_grad=True)
    out = op(a)
    assert isinstance(out, torch.Tensor) and out.shape[0] == 2, f"extractor {name!r} must keep the batch"
    out.float().square().sum().backward()
    assert a.grad is not None, f"extractor {name!r}: no gradient to its input"


# -- tasks -------------------------------------------------------------------------------------
def check_task(name: str, task: Any) -> None:
    assert callable(getattr(task, "example", None)), f"task {name!r} must provide example(batch_size, generator)"
    gen = torch.Generator().manual_seed(0)
    prediction, target = task.example(4, gen)
    prediction = prediction.detach().requires_grad_(True)
    for method in ("loss", "inherit_loss"):
        value = getattr(task, method)(prediction, target)
        _finite_scalar(value, f"task {name!r}.{method}")
        grad, = torch.autograd.grad(value, prediction)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, f"task {name!r}.{method}: no gradient"
    teacher = prediction.detach().clone().add_(0.5).requires_grad_(True)
    value = task.distill_loss(prediction, teacher, target)
    _finite_scalar(value, f"task {name!r}.distill_loss")
    value.backward()
    assert prediction.grad is not None, f"task {name!r}.distill_loss: no gradient to the student"
    assert teacher.grad is None or teacher.grad.abs().sum() == 0, f"task {name!r}.distill_loss: the teacher got a gradient"
    metrics = task.metrics()
    names = [m.name for m in metrics]
    assert task.primary_metric in names, f"task {name!r}: primary metric {task.primary_metric!r} not in {names}"
    for metric in metrics:
        stats = metric.stats(prediction.detach(), target)
        assert stats.dim() == 1, f"task {name!r}: metric {metric.name!r} stats must be 1-D"
        assert isinstance(metric.compute(stats), float), f"task {name!r}: metric {metric.name!r} must compute a float"
    bad = prediction.detach()[:2]
    try:
        task.loss(bad, target)
    except (ValueError, HKTError) as exc:
        assert str(exc).strip(), f"task {name!r} refused a mismatched target without a reason"
    else:
        raise AssertionError(f"task {name!r}.loss accepted 2 predictions for 4 targets; it must raise ValueError")


def check_metrics_of_tasks(manager=None) -> None:
    """Sum-reducibility of every task's metrics on the task's own example."""
    for entry in _manager(manager).registry("tasks").entries():
        task = entry.obj
        prediction, target = task.example(6, torch.Generator().manual_seed(1))
        for metric in task.metrics():
            whole = metric.stats(prediction, target)
            halves = metric.stats(*_slice(prediction, target, 0, 3)) + metric.stats(*_slice(prediction, target, 3, 6))
            assert torch.allclose(whole.double(), halves.double()), \
                f"metric {metric.name!r} of task {entry.name!r}: stats do not add up across batches"


def check_metric(name: str, metric: Any, task: str = "classification", manager=None) -> None:
    """Sum-reducibility of one metric on the example of ``task`` (a metric of that task's layout)."""
    prediction, target = _manager(manager).lookup("tasks", task).example(6, torch.Generator().manual_seed(1))
    whole = metric.stats(prediction, target)
    assert isinstance(whole, torch.Tensor) and whole.dim() == 1, f"metric {name!r}: stats must be a 1-D tensor"
    halves = metric.stats(*_slice(prediction, target, 0, 3)) + metric.stats(*_slice(prediction, target, 3, 6))
    assert torch.allclose(whole.double(), halves.double()), f"metric {name!r}: stats do not add up across batches"
    assert isinstance(metric.compute(whole), float), f"metric {name!r}: compute must return a float"


def _slice(prediction, target, lo, hi):
    def cut(v):
        if isinstance(v, (tuple, list)):
            return type(v)(cut(t) for t in v)
        if isinstance(v, dict):
            return {k: cut(t) for k, t in v.items()}
        return v[lo:hi]
    return cut(prediction), cut(target)


# -- datasets ----------------------------------------------------------------------------------
def check_dataset(name: str, factory: Any, contract_options: dict | None = None) -> None:
    from ..data import DatasetBundle, as_pairs

    if contract_options is None:
        try:
            bundle = factory()
        except (ValueError, HKTError, FileNotFoundError, TypeError) as exc:
            # a reader of a user's directory needs its ``root``: the error must say so
            assert len(str(exc)) > 10, f"dataset {name!r} without its options failed without saying what it expected"
            return
    else:
        bundle = factory(**contract_options)
    assert isinstance(bundle, DatasetBundle), f"dataset {name!r} must return a DatasetBundle"
    assert len(bundle.train) > 0 and len(bundle.test) > 0, f"dataset {name!r} has an empty split"
    bundle = as_pairs(bundle, name)  # mapping samples ({"input_ids": ..., "label": ...}) as (inputs, target)
    inputs, _ = bundle.train[0]
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    shapes = tuple(tuple(t.shape) for t in inputs)
    assert shapes == tuple(tuple(s) for s in bundle.input_shapes), \
        f"dataset {name!r}: sample shapes {shapes} differ from input_shapes {bundle.input_shapes}"
    again = as_pairs(factory(**(contract_options or {})), name)
    first = again.train[0][0]
    first = first if isinstance(first, (tuple, list)) else (first,)
    assert all(torch.equal(a, b) for a, b in zip(inputs, first)), f"dataset {name!r} is not deterministic"


# -- adapters ----------------------------------------------------------------------------------
def check_adapter(name: str, adapter: Any, manager=None) -> None:
    from ..adapters import Adapter

    assert isinstance(adapter, Adapter), f"adapter {name!r} must be an Adapter instance"
    model = nn.Sequential(nn.Linear(3, 2))
    assert isinstance(adapter.handles(model), bool), f"adapter {name!r}.handles must return a bool"
    one = adapter.example_inputs(model, [(2, 3)])
    two = adapter.example_inputs(model, [(2, 3)])
    assert tuple(one[0].shape) == (2, 3) and torch.equal(one[0], two[0]), \
        f"adapter {name!r}.example_inputs must give the requested shapes deterministically"
    t = torch.randn(2, 3)
    assert adapter.prediction(t) is t, f"adapter {name!r}.prediction of a tensor must return it"
    models = _manager(manager).registry("models")
    claimed = [n for n in getattr(adapter, "model_names", ()) if n in models][:1]
    for model_name in claimed:
        from ..align import resolve
        from ..models import build_model
        from ..trace.tracer import fx_trace

        net = build_model(model_name, _manager(manager))
        assert adapter.handles(net), f"adapter {name!r} does not handle its own model {model_name!r}"
        blocks = adapter.declared_blocks(net)
        if blocks:
            resolve(fx_trace(net, adapter), list(blocks))


# -- methods -----------------------------------------------------------------------------------
class _TinyNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.hidden = nn.Linear(2 * width, 2 * width)
        self.head = nn.Linear(2 * width, 3)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(self.pool(self.body(self.stem(x))))))


def check_method(name: str, method_cls: Any, manager=None) -> None:
    from ..config import HKTConfig, TrainConfig
    from ..train.method import Method, MethodContext, StepOutput

    assert isinstance(method_cls, type) and issubclass(method_cls, Method), f"method {name!r} must subclass Method"
    torch.manual_seed(0)
    child = _TinyNet(4)
    parent = _TinyNet(8).eval().requires_grad_(False) if method_cls.needs_parent else None
    parent_state = {k: v.clone() for k, v in parent.state_dict().items()} if parent is not None else {}
    x = torch.randn(2, 1, 8, 8)
    ctx = MethodContext(child=child, task=_manager(manager).lookup("tasks", "classification"),
                        train=TrainConfig(), hkt=HKTConfig(), parent=parent, example_inputs=(x,),
                        options=dict(getattr(method_cls, "default_options", {}) or {}))
    if "manager" in {a.name for a in MethodContext.__attrs_attrs__}:
        ctx.manager = _manager(manager)
    method = method_cls(ctx)
    child = method.deployed()
    trainable_ids = {id(p) for p in method.trainable_module().parameters()}
    assert all(id(p) in trainable_ids for p in child.parameters()), f"method {name!r}: a child parameter is not optimised"
    method.train(True)
    assert parent is None or not parent.training, f"method {name!r} put the parent in train mode"
    gen = torch.Generator().manual_seed(0)
    inputs, target = torch.randn(8, 1, 8, 8, generator=gen), torch.arange(8) % 3
    out = method.training_step((inputs,), target)
    assert isinstance(out, StepOutput), f"method {name!r}.training_step must return a StepOutput"
    _finite_scalar(out.loss, f"method {name!r} loss")
    before = {k: v.clone() for k, v in child.state_dict().items()}
    optimizer = torch.optim.SGD(method.trainable_module().parameters(), lr=0.1)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in child.parameters()), \
        f"method {name!r}: no gradient reaches the child"
    optimizer.step()
    assert any(not torch.equal(before[k], v) for k, v in child.state_dict().items()), \
        f"method {name!r}: an optimiser step left the child unchanged"
    if parent is not None:
        assert all(p.grad is None for p in parent.parameters()), f"method {name!r}: the parent got gradients"
        assert all(torch.equal(parent_state[k], v) for k, v in parent.state_dict().items()), \
            f"method {name!r} changed the parent"


# -- models ------------------------------------------------------------------------------------
def _shapes_from_pairs(name: str, manager) -> tuple[Any, dict]:
    """Input shapes and options of ``name`` from the first registered pair card that uses it."""
    for entry in manager.registry("pairs").entries():
        card = entry.obj
        for ref, options in ((card.parent, card.parent_options), (card.child, card.child_options)):
            if ref == name:
                return card.input_shapes, dict(options)
    return None, {}


def check_model(name: str, factory: Any = None, manager=None, *, input_shapes=None,
                options: dict | None = None) -> None:
    """The models contract (module docstring) of the registered model ``name``."""
    from ..adapters import adapter_for
    from ..align import resolve
    from ..models import build_model
    from ..trace.graph import trace
    from ..trace.tracer import fx_trace

    manager = _manager(manager)
    if input_shapes is None:
        input_shapes, found = _shapes_from_pairs(name, manager)
        options = found if options is None else options
    torch.manual_seed(0)
    model = build_model(name, manager, **(options or {}))
    assert isinstance(model, nn.Module), f"model {name!r} must build an nn.Module"
    adapter = adapter_for(model, manager)
    if input_shapes:
        inputs = adapter.example_inputs(model, [tuple(s) for s in input_shapes])
        model.eval()
        with torch.no_grad():
            prediction = adapter.prediction(model(*inputs))
        assert isinstance(prediction, torch.Tensor) and prediction.shape[0] == inputs[0].shape[0], \
            f"model {name!r}: its prediction must be a tensor with the batch first"
        gm = trace(model, inputs, adapter).gm
    else:
        gm = fx_trace(model, adapter)
    blocks = adapter.declared_blocks(model)
    if blocks:
        try:
            resolve(gm, list(blocks))
        except HKTError as exc:
            raise AssertionError(f"model {name!r}: a block its adapter declares is not in its trace: {exc}") from None


# -- pairs -------------------------------------------------------------------------------------
def check_pair_card(name: str, card: Any, manager=None) -> None:
    """The pairs contract (module docstring) of the registered pair ``name``."""
    from ..train.setup.preflight import PairCheckError, check_pair, needs_user_folder

    import attrs

    manager = _manager(manager)
    if ":" not in card.dataset and card.dataset in manager.registry("datasets"):
        small = manager.registry("datasets").entry(card.dataset).metadata.get("contract_options") or {}
        card = attrs.evolve(card, dataset_options={**card.dataset_options, **small})
    try:
        check_pair(card, manager=manager, methods=["baseline", "hkt"], required=["baseline", "hkt"])
    except PairCheckError as exc:
        if exc.stage != "data" or not needs_user_folder(card, manager):
            raise AssertionError(f"pair {name!r} fails its pre-flight: {exc}") from None
        _check_pair_without_data(name, card, manager)


def _check_pair_without_data(name: str, card: Any, manager) -> None:
    from ..adapters import adapter_for
    from ..models import build_model
    from ..train.methods import HKTMethod
    from ..train.method import MethodContext

    torch.manual_seed(0)
    parent = build_model(card.parent, manager, **card.parent_options).eval().requires_grad_(False)
    child = build_model(card.child, manager, **card.child_options)
    inputs = tuple(adapter_for(child, manager).example_inputs(child, card.input_shapes))
    with torch.no_grad():
        pp = adapter_for(parent, manager).prediction(parent(*inputs))
        pc = adapter_for(child, manager).prediction(child.eval()(*inputs))
    assert pp.shape == pc.shape, f"pair {name!r}: parent predicts {list(pp.shape)}, child {list(pc.shape)}"
    ctx = MethodContext(child=child, task=manager.lookup("tasks", card.task), train=card.train, hkt=card.hkt,
                        card=card, parent=parent, example_inputs=inputs, manager=manager)
    try:
        method = HKTMethod(ctx)
    except HKTError as exc:
        raise AssertionError(f"pair {name!r}: HKT cannot build its Family: {exc}") from None
    method.train(True)
    output = method.family(*inputs)
    assert all(torch.isfinite(t).all() for t in output if isinstance(t, torch.Tensor)), \
        f"pair {name!r}: the Family's streams are not finite"


CHECKS = {
    "transfers": lambda e, m: check_transfer(e.name, e.obj),
    "mixtures": lambda e, m: check_mixture(e.name, e.obj),
    "extractors": lambda e, m: check_extractor(e.name, e.obj),
    "tasks": lambda e, m: check_task(e.name, e.obj),
    "losses": lambda e, m: check_task(e.name, e.obj),  # the deprecated name of "tasks"
    "datasets": lambda e, m: check_dataset(e.name, e.obj, e.metadata.get("contract_options")),
    "adapters": lambda e, m: check_adapter(e.name, e.obj, m),
    "methods": lambda e, m: check_method(e.name, e.obj, m),
    "models": lambda e, m: check_model(e.name, e.obj, m, input_shapes=e.metadata.get("input_shapes"),
                                       options=e.metadata.get("contract_options")),
    "pairs": lambda e, m: check_pair_card(e.name, e.obj, m),
}


def check_entry(kind: str, name: str, manager=None) -> None:
    """Run the contract of ``kind`` on the registered ``name``."""
    manager = _manager(manager)
    entry = manager.registry(kind).entry(name)
    if kind == "metrics":
        return check_metrics_of_tasks(manager)
    CHECKS[kind](entry, manager)


def check_all(kind: str, manager=None, *, plugin: str | None = None) -> list[str]:
    """Run the contract of ``kind`` over everything registered (only plugin ``plugin``'s
    registrations when given); returns the names checked."""
    manager = _manager(manager)
    entries = manager.registry(kind).entries()
    if plugin is not None:
        if plugin not in manager.plugins:
            from ..errors import RegistryError, unknown_name_message

            raise RegistryError(unknown_name_message("plugin", plugin, manager.plugins))
        entries = [e for e in entries if e.plugin == plugin]
    names = [e.name for e in entries]
    for name in names:
        check_entry(kind, name, manager)
    return names
