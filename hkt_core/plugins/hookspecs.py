"""Hook specifications: what a plugin may implement.

Every hook has the same shape, ``hkt_register_<kind>(registry)``: the plugin calls
``registry.add(name, obj, description=..., **metadata)`` once per thing it provides. The host
stages the additions and commits them only if the hook returns without raising, so a plugin that
fails midway leaves nothing behind. An implementation may omit the ``registry`` argument only if
it registers nothing (pluggy allows an implementation to take a subset of a spec's arguments).
The host calls each plugin's hooks through pluggy (a subset hook caller holding that plugin's
implementations and every hook wrapper), so wrappers and hook tracing see every registration.
:func:`hkt_core.registers` writes such a hook from a function returning what it provides.

All hooks exist since version 0.1, except ``hkt_register_export_formats`` (added after 0.1.0).
"""

from __future__ import annotations

import pluggy

from .registry import Registrar

PROJECT = "hkt"

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def hkt_register_adapters(registry: Registrar) -> None:
    """Register architecture adapters (:class:`hkt_core.adapters.Adapter` instances).

    :param registry: a registrar; ``registry.add(name, adapter)``.
    An adapter claims model classes and tells the tracer about leaf modules, declared blocks,
    example inputs and which output is the prediction.
    """


@hookspec
def hkt_register_models(registry: Registrar) -> None:
    """Register model factories: ``registry.add("resnet20", factory, task="classification")``.

    :param registry: a registrar. A factory is a callable taking keyword options and returning an
        ``nn.Module``.
    """


@hookspec
def hkt_register_extractors(registry: Registrar) -> None:
    """Register extractors: callables combining one or more graph values into one tensor.

    :param registry: a registrar; ``registry.add(name, extractor_cls)``.
    """


@hookspec
def hkt_register_transfers(registry: Registrar) -> None:
    """Register transfer operators tau: ``registry.add(name, cls)``.

    :param registry: a registrar. ``cls(source_shape, target_shape)`` builds a
        :class:`hkt_core.Transfer` mapping a donor activation to the receiver's shape (shapes exclude the batch dimension).
    """


@hookspec
def hkt_register_mixtures(registry: Registrar) -> None:
    """Register mixture operators: ``registry.add(name, cls)``.

    :param registry: a registrar. ``cls(lam=..., tokens=..., **HKTConfig.mixture_options)`` builds a
        :class:`hkt_core.Mixture` called as ``mixture(receiver, donor)`` returning the mixed receiver
        activation, or a ``MixOutput(value, loss)`` that adds a feature loss to L1.
    """


@hookspec
def hkt_register_tasks(registry: Registrar) -> None:
    """Register tasks: the task loss, the inheritance loss, the distillation loss and metrics.

    :param registry: a registrar; ``registry.add("classification", task)`` where ``task``
        follows :class:`hkt_core.tasks.Task`.
    """


@hookspec
def hkt_register_losses(registry: Registrar) -> None:
    """Deprecated name of :func:`hkt_register_tasks` (what it registers joins the ``tasks`` registry)."""


@hookspec
def hkt_register_metrics(registry: Registrar) -> None:
    """Register metrics (:class:`hkt_core.tasks.metrics.Metric`): sum-reducible statistics per batch.

    :param registry: a registrar; ``registry.add("accuracy", metric)``.
    """


@hookspec
def hkt_register_datasets(registry: Registrar) -> None:
    """Register data sets: ``registry.add("digits", factory)``.

    :param registry: a registrar. ``factory(**options)`` returns a
        :class:`hkt_core.data.DatasetBundle`. Nothing may be downloaded.
    """


@hookspec
def hkt_register_pairs(registry: Registrar) -> None:
    """Register parent/child pair cards (:class:`hkt_core.pairs.PairCard`).

    :param registry: a registrar; ``registry.add(card.name, card)``. Helper:
        :func:`hkt_core.pairs.register_cards_from` adds every ``*.toml`` card of a folder.
    """


@hookspec
def hkt_register_methods(registry: Registrar) -> None:
    """Register training methods (:class:`hkt_core.train.methods.Method` subclasses).

    :param registry: a registrar; ``registry.add("kd", KDMethod)``.
    """


@hookspec
def hkt_register_commands(registry: Registrar) -> None:
    """Register CLI sub-commands: ``registry.add("flow", configure)``.

    :param registry: a registrar. ``configure(parser)`` receives an ``argparse.ArgumentParser``
        for ``hkt <name>``; it adds arguments (or sub-parsers) and calls
        ``parser.set_defaults(handler=fn)`` where ``fn(args) -> int`` runs the command.
    """


@hookspec
def hkt_register_export_formats(registry: Registrar) -> None:
    """Register formats of ``hkt export RUN --format NAME``: ``registry.add("hf", export)``.

    :param registry: a registrar. ``export(run, out, *, atol) -> (path, difference)`` writes the
        run's best child (``run.child()``) to ``out`` (None: a default under ``run.path / "export"``),
        loads it back, checks its output against the child's within ``atol`` and returns what it
        wrote and the largest difference. Nothing half-written may stay under the final name: write
        to a temporary beside it, then rename (:mod:`hkt_core.io`).
    """
