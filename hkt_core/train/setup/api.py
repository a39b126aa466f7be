"""``hkt_core.train(pair, method, **overrides) -> Run``: resolve a pair and settings, run, return the run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from ...config import (HKTConfig, TrainConfig, apply_overrides, check_registered, hkt_preset, parse_value, structure,
                      unstructure)
from ...errors import ConfigError
from ...pairs.card import PairCard
from ..folders.run import Run
from ..loop.trainer import EpochCallback, RunSpec
from .training import Trainer

TRAIN_FIELDS = tuple(a.name for a in attrs.fields(TrainConfig))


def default_out(pair: str, method: str) -> Path:
    """``runs/<pair>-<method>-<timestamp>`` under the current directory."""
    return Path("runs") / f"{pair}-{method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def resolve(pair: str | PairCard, method: str, *, out: str | Path | None = None, resume: bool = False,
            force: bool = False, parent_weights: str | Path | None = None, manager=None,
            settings: Sequence[str] = (), hkt: dict[str, Any] | None = None,
            method_options: dict[str, Any] | None = None, progress: bool | None = None,
            callbacks: Sequence[EpochCallback] = (), stages: int | None = None, log: Sequence[str] = (),
            parent_epochs: int | None = None, **overrides: Any) -> RunSpec:
    """A :class:`RunSpec` from a pair, a method and overrides (``TrainConfig`` fields by keyword,
    ``hkt={...}`` for ``HKTConfig`` fields, ``settings=["train.lr=0.05", ...]`` as ``--set``,
    ``stages=N`` or ``card.stages=N`` in ``settings`` for the card's nHKT, ``hkt.preset=paper`` in
    ``settings`` for a named set of ``[hkt]`` settings, ``parent_epochs=N`` (or ``parent_train.epochs=N``
    in ``settings``) for the parent's epochs when it is trained (``epochs`` is the children's) (:data:`hkt_core.config.HKT_PRESETS`; the other
    assignments apply over it), ``log=["tensorboard"]``
    for trackers writing into the run folder)."""
    from ...plugins.host import resolve_manager
    from ..folders.parents import parent_train_config

    manager = resolve_manager(manager)
    card = pair if isinstance(pair, PairCard) else manager.lookup("pairs", pair)
    method_cls = manager.lookup("methods", method)
    if resume and force:
        raise ConfigError("--resume and --force exclude each other: continue the run, or start it over")
    unknown = sorted(set(overrides) - set(TRAIN_FIELDS))
    if unknown:
        raise ConfigError(f"unknown training option(s) {', '.join(unknown)}; allowed: {', '.join(TRAIN_FIELDS)}, "
                          f"plus out, resume, force, parent_weights, parent_epochs, settings, hkt, method_options, "
                          f"progress, callbacks, stages, log")
    if parent_epochs is not None and (isinstance(parent_epochs, bool) or not isinstance(parent_epochs, int)
                                      or parent_epochs < 1):
        raise ConfigError(f"--parent-epochs {parent_epochs!r} is invalid: an integer >= 1 (the parent's epochs)")
    base = parent_train_config(card) if method_cls.trains_parent else card.train
    data = {"train": unstructure(base), "hkt": unstructure(card.hkt),
            "method": dict(getattr(method_cls, "default_options", {}) or {})}
    if resume and out is not None:
        _recorded_defaults(data, Path(out))
    data["train"].update({k: v for k, v in overrides.items() if v is not None})
    _move_settings(data)   # train.kd_* (a card's pin, a keyword, a recorded run): the method's options now
    unknown_hkt = sorted(set(hkt or {}) - {a.name for a in attrs.fields(HKTConfig)})
    if unknown_hkt:
        raise ConfigError(f"unknown hkt option(s) {', '.join(unknown_hkt)}; allowed: "
                          f"{', '.join(a.name for a in attrs.fields(HKTConfig))}")
    data["hkt"].update(hkt or {})
    unknown_opts = sorted(set(method_options or {}) - set(data["method"]))
    if unknown_opts:
        raise ConfigError(f"method {method!r} has no option(s) {', '.join(unknown_opts)}; it takes: "
                          f"{', '.join(sorted(data['method'])) or 'none'}")
    data["method"].update(method_options or {})
    data["dataset"] = dict(card.dataset_options)
    data["card"] = {"stages": card.stages if stages is None else stages}
    data["parent_train"] = {**card.parent_train, **({"epochs": parent_epochs} if parent_epochs is not None else {})}
    settings = _moved_assignments(_without_removed(list(settings)), data["method"])
    presets = [s for s in settings if s.split("=", 1)[0].strip() == "hkt.preset"]
    for assignment in presets:  # a named set of [hkt] settings, under the other --set assignments
        data["hkt"].update(hkt_preset(parse_value(assignment.split("=", 1)[1].strip()) if "=" in assignment else ""))
    settings = [s for s in settings if s not in presets]
    data = apply_overrides(data, settings, open_sections=("dataset", "hkt.mixture_options", "parent_train"))
    if data["parent_train"] != card.parent_train:   # the parent's own training settings
        card = attrs.evolve(card, parent_train=data["parent_train"])
        parent_train_config(card)   # a bad value fails now, in one line
    if data["dataset"] != card.dataset_options:
        card = attrs.evolve(card, dataset_options=data["dataset"])
    if data["card"]["stages"] != card.stages:
        card = _with_stages(card, data["card"]["stages"])
    train = structure(data["train"], TrainConfig)
    hkt_config = structure(data["hkt"], HKTConfig)
    check_registered(hkt_config, manager, changed_from=card.hkt)   # a mistyped --set hkt.mixture, in one line
    out = Path(out) if out is not None else default_out(card.name, method)
    if train.channels_last:
        from ..loop.memory_format import check_channels_last

        check_channels_last(card.name, card.input_shapes)
    from ..folders.tracking import trackers_for

    return RunSpec(card=card, method=method, method_cls=method_cls, train=train, hkt=hkt_config,
                   out=out, method_options=data["method"], resume=resume, force=force,
                   parent_weights=Path(parent_weights) if parent_weights is not None else None,
                   manager=manager, progress=progress,
                   callbacks=(*callbacks, *trackers_for([log] if isinstance(log, str) else log, out)))


def _without_removed(settings: list[str]) -> list[str]:
    """``--set`` assignments minus those of removed settings (:data:`hkt_core.config.REMOVED_SETTINGS`),
    each said once as a deprecation."""
    from ...config import REMOVED_SETTINGS, drop_removed

    kept = []
    for assignment in settings:
        key = assignment.split("=", 1)[0].strip()
        if key in REMOVED_SETTINGS:
            section, name = key.split(".", 1)
            drop_removed({name: None}, section)
            continue
        kept.append(assignment)
    return kept
def _move_settings(data: dict[str, Any]) -> None:
    """The moved settings given under ``[train]`` (:data:`hkt_core.config.MOVED_SETTINGS`: a card's
    ``[train] kd_weight``, ``kd_weight=`` as a keyword) become the method's options where the method
    takes them (a notice, once), and are left out of ``[train]`` either way."""
    from ...config import MOVED_SETTINGS, say_moved

    for key, option in MOVED_SETTINGS.items():
        name = key.split(".", 1)[1]
        value = data["train"].pop(name, None)
        if value is None:
            continue
        say_moved(key)
        if option in data["method"]:
            data["method"][option] = value


def _moved_assignments(settings: list[str], method_options: dict[str, Any]) -> list[str]:
    """``--set`` assignments with the moved settings spelt anew (``train.kd_weight=0.9`` ->
    ``method.weight=0.9``, a notice once), or left out for a method that does not take them."""
    from ...config import MOVED_SETTINGS, say_moved

    out = []
    for assignment in settings:
        key = assignment.split("=", 1)[0].strip()
        if key not in MOVED_SETTINGS or "=" not in assignment:
            out.append(assignment)
            continue
        say_moved(key)
        option = MOVED_SETTINGS[key]
        if option in method_options:
            out.append(f"method.{option}={assignment.split('=', 1)[1]}")
    return out


#: (card, stages) whose dropped fixed pairs were already noted in this process
_NOTED: set[tuple[str, int]] = set()


def _with_stages(card: PairCard, stages: Any) -> PairCard:
    """``card`` at ``stages``: fixed ``[alignment] pairs`` of another count are dropped (the
    alignment is then chosen automatically), with a one-line notice on stderr."""
    import sys

    fixed = card.alignment
    if fixed is not None and isinstance(stages, int) and not isinstance(stages, bool) and stages >= 2 \
            and len(fixed) not in (stages - 1, stages):
        if (card.name, stages) not in _NOTED:  # once per process (a run resolves its card more than once)
            _NOTED.add((card.name, stages))
            print(f"note: card {card.name!r} fixes {len(fixed)} mixing pair(s) ([alignment] pairs = "
                  f"{[list(p) for p in fixed]}); stages = {stages} drops them and aligns automatically",
                  file=sys.stderr)
        return attrs.evolve(card, alignment=None, stages=stages)
    return attrs.evolve(card, stages=stages)


def _recorded_defaults(data: dict[str, Any], out: Path) -> None:
    """A run written before a default changed (:data:`hkt_core.config.CHANGED_DEFAULTS`) resumes
    with the value it recorded, unless the value is given again (overrides and ``--set`` apply after)."""
    from ...config import CHANGED_DEFAULTS, read_toml

    if not (out / "config.toml").is_file():
        return
    from ...config import MOVED_SETTINGS

    stored = read_toml(out / "config.toml")
    for key, (old, new) in CHANGED_DEFAULTS.items():
        section, name = key.split(".", 1)
        recorded = stored.get(section, {}).get(name)
        if key in MOVED_SETTINGS:   # recorded under [train] before it moved; now the method's option
            section, name = "method", MOVED_SETTINGS[key]
            if name not in data["method"]:
                continue
            given = data["train"].get(key.split(".", 1)[1])   # the card's pin, under the old spelling
            now = given if given is not None else data["method"][name]
        else:
            now = data[section].get(name)
        if _same(recorded, old) and _same(now, new):
            data[section][name] = recorded
            if section == "method":
                data["train"].pop(key.split(".", 1)[1], None)


def _same(a: Any, b: Any) -> bool:
    listed = lambda v: [float(x) for x in v] if isinstance(v, (list, tuple)) else v  # noqa: E731
    return listed(a) == listed(b)


def train(pair: str | PairCard, method: str, **overrides: Any) -> Run:
    """Train ``method`` on ``pair`` and return the :class:`Run`.

    Keyword overrides: any :class:`~hkt_core.config.TrainConfig` field (``epochs=3, lr=0.05,
    seed=7, device="cpu"``), ``stages=3`` (the card's nHKT), ``hkt={"lam": 0.5}``, ``settings=["train.grad_clip=1.0"]``,
    ``out=DIR``, ``resume=True`` or ``force=True``, ``parent_weights=FILE``, ``manager=`` (a plugin
    manager), ``progress=`` (bar on/off; default: on a terminal), ``callbacks=[fn(epoch, record)]``
    (an experiment tracker is one of these), ``log=["tensorboard"]`` (event files in the run folder),
    ``precision="bf16"``, ``compile=True``, ``channels_last=True``.
    """
    spec = resolve(pair, method, **overrides)
    out = Trainer(spec).fit()
    return Run(out, spec.manager)
