"""Frozen configuration records, validated at construction, with TOML I/O and dotted overrides.

Every rule lives in a validator whose message names the field, the value and what is allowed.
Records are changed with :func:`attrs.evolve`; :func:`apply_overrides` handles ``--set a.b=v``.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
import tomli_w

from .errors import ConfigError, did_you_mean

#: where a mixing point mixes: both ways, parent -> child only, child -> parent only
DIRECTIONS = ("both", "to_child", "to_parent")
#: earlier spellings (the paper's "backbone" and "head" inheritance), accepted and normalised
DIRECTION_ALIASES = {"backbone": "to_child", "head": "to_parent"}
TOKENS = ("auto", "spatial", "channel")
INHERIT_LOSSES = ("mae", "task")
OPTIMIZERS = ("sgd", "adamw")
#: ``linear``: after the warm-up, straight down to 0 at the end of the run (the transformer recipe)
SCHEDULES = ("none", "multistep", "cosine", "linear")
DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "bf16", "fp16")
#: Seeds are stored in 32 bits so that every derived seed (per epoch, per rank) fits torch's generators.
SEED_MAX = 2**32 - 1


def _fail(cls: str, field: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{cls}.{field} = {value!r} is invalid: {allowed}")


def in_range(lo: float, hi: float, *, lo_open: bool = False):
    def check(inst, attribute, value):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (lo < value if lo_open else lo <= value) and value <= hi
        if not ok:
            left = "(" if lo_open else "["
            raise _fail(type(inst).__name__, attribute.name, value, f"must be a number in {left}{lo}, {hi}]")
    return check


def one_of(choices: tuple[str, ...]):
    def check(inst, attribute, value):
        if value not in choices:
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            raise _fail(type(inst).__name__, attribute.name, value,
                        f"must be one of {', '.join(choices)}{'; ' + hint if hint else ''}")
    return check


def positive_int(inst, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail(type(inst).__name__, attribute.name, value, "must be an integer >= 1")


def non_negative_int(inst, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(type(inst).__name__, attribute.name, value, "must be an integer >= 0")


def non_negative(inst, attribute, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise _fail(type(inst).__name__, attribute.name, value, "must be a finite number >= 0")


def boolean(inst, attribute, value):
    if not isinstance(value, bool):
        raise _fail(type(inst).__name__, attribute.name, value, "must be true or false")


def canonical_direction(value: Any) -> Any:
    """``value`` in the one direction vocabulary (an alias becomes its name; anything else stays)."""
    return DIRECTION_ALIASES.get(value, value) if isinstance(value, str) else value


def canonical_directions(value: Any) -> str | tuple[str, ...]:
    """``HKTConfig.directions`` in the one vocabulary (aliases replaced, a list made a tuple)."""
    if isinstance(value, (list, tuple)):
        return tuple(canonical_direction(v) for v in value)
    return canonical_direction(value)


def _options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise _fail("HKTConfig", "mixture_options", value,
                    "must be a table of keyword options for the mixture, e.g. {beta = 0.1}")
    return dict(value)


def _to_alphas(value: Any) -> tuple[float, ...]:
    """Three numbers as floats; anything else is refused with the expected form."""
    expected = "must be three numbers (a1, a2, a3), e.g. [0.25, 0.5, 0.25]"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise _fail("HKTConfig", "alphas", value, expected)
    items = tuple(value)
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in items):
        raise _fail("HKTConfig", "alphas", value, expected)
    return tuple(float(x) for x in items)


#: Named HKT settings: ``measured`` (the defaults: what the benchmark's validation search chose on
#: its positive-control pair, docs/RESULTS.md) and ``paper`` (the paper's literal settings).
HKT_PRESETS: dict[str, dict[str, Any]] = {
    "measured": {"inherit_loss": "task", "alphas": (0.1, 0.8, 0.1), "lam": 0.6},
    "paper": {"inherit_loss": "mae", "alphas": (0.25, 0.5, 0.25), "lam": 0.6},
}


def hkt_preset(name: Any) -> dict[str, Any]:
    """The settings of preset ``name`` (:data:`HKT_PRESETS`)."""
    if name not in HKT_PRESETS:
        raise ConfigError(f"hkt.preset = {name!r} is invalid: must be one of {', '.join(HKT_PRESETS)} "
                          f"(measured: the defaults, chosen by the benchmark; paper: the paper's settings)")
    return dict(HKT_PRESETS[name])


@attrs.frozen
class HKTConfig:
    """How the Family mixes and how its loss is weighted (DESIGN §2).

    The defaults are the settings the quality benchmark's validation search chose on its
    positive-control pair (:data:`HKT_PRESETS` ``"measured"``: the task loss in L1/L3, alphas
    (0.1, 0.8, 0.1), lam 0.6; docs/RESULTS.md); the paper's literal settings are the preset
    ``"paper"`` (MAE in L1/L3, alphas (0.25, 0.5, 0.25)): ``HKTConfig.preset("paper")``, or
    ``--set hkt.preset=paper`` on the command line.

    ``alphas`` weight L1 (inherited child output), L2 (native child output, task loss) and L3
    (parent head with the child's features mixed in). ``directions`` is one of both | to_child |
    to_parent for every mixing point, or one entry per mixing point (``backbone`` and ``head`` are
    accepted for to_child and to_parent). ``mixture``, ``transfer`` and ``extractor`` name
    registered ETM operators (checked when a Family is built); ``mixture_options`` are keyword
    options of the mixture beyond ``lam`` and ``tokens``; ``extractor``
    combines the donor nodes of a pair that names several; ``inherit_loss`` whether L1/L3 use the
    task's MAE (``mae``) or its task loss. The task itself is the pair's (a card's ``task``), or the
    ``task=`` of a :class:`~hkt_core.Family` built by hand: ``HKTConfig`` no longer names one
    (:data:`REMOVED_SETTINGS`).
    """

    lam: float = attrs.field(default=0.6, validator=in_range(0.0, 1.0))
    alphas: tuple[float, float, float] = attrs.field(default=(0.1, 0.8, 0.1), converter=_to_alphas)
    mixture: str = attrs.field(default="ga")
    transfer: str = attrs.field(default="auto")
    tokens: str = attrs.field(default="auto", validator=one_of(TOKENS))
    directions: str | tuple[str, ...] = attrs.field(default="both", converter=canonical_directions)
    inherit_loss: str = attrs.field(default="task", validator=one_of(INHERIT_LOSSES))
    extractor: str = attrs.field(default="identity")
    mixture_options: dict[str, Any] = attrs.field(factory=dict, converter=_options)

    @alphas.validator
    def _check_alphas(self, attribute, value):
        if len(value) != 3:
            raise _fail("HKTConfig", "alphas", value, "must hold exactly three weights (a1, a2, a3)")
        for i, a in enumerate(value, 1):
            if not (math.isfinite(a) and 0.0 <= a <= 1.0):
                raise _fail("HKTConfig", "alphas", value, f"a{i} = {a} must lie in [0, 1]")
        if abs(sum(value) - 1.0) > 1e-6:
            raise _fail("HKTConfig", "alphas", value, f"must sum to 1 within 1e-6 (they sum to {sum(value):.6g})")
        if max(value[0], value[2]) > value[1]:
            raise _fail("HKTConfig", "alphas", value, "requires max(a1, a3) <= a2 (the native loss dominates)")

    @directions.validator
    def _check_directions(self, attribute, value):
        if not isinstance(value, (str, tuple)):
            raise _fail("HKTConfig", "directions", value,
                        f"must be one of {', '.join(DIRECTIONS)} or a list with one of them per mixing point")
        items = (value,) if isinstance(value, str) else value
        if isinstance(value, tuple) and not value:
            raise _fail("HKTConfig", "directions", value, "a per-point tuple needs one entry per mixing point")
        for d in items:
            if d not in DIRECTIONS:
                raise _fail("HKTConfig", "directions", value, f"each entry must be one of {', '.join(DIRECTIONS)}")
        a1, _, a3 = self.alphas
        if a3 > 0 and not any(d in ("both", "to_parent") for d in items):
            raise _fail("HKTConfig", "alphas", self.alphas,
                        "a3 must be 0 when no point mixes child->parent (directions has no 'both' or 'to_parent')")
        if a1 > 0 and not any(d in ("both", "to_child") for d in items):
            raise _fail("HKTConfig", "alphas", self.alphas,
                        "a1 must be 0 when no point mixes parent->child (directions has no 'both' or 'to_child')")

    @mixture.validator
    @transfer.validator
    @extractor.validator
    def _check_str(self, attribute, value):
        if not isinstance(value, str) or not value:
            raise _fail("HKTConfig", attribute.name, value, "must be a registered name")

    @classmethod
    def preset(cls, name: str, **changes: Any) -> HKTConfig:
        """The settings of preset ``name`` (``measured`` or ``paper``, :data:`HKT_PRESETS`), with ``changes``."""
        return cls(**{**hkt_preset(name), **changes})

    def directions_for(self, points: int) -> tuple[str, ...]:
        """One direction per mixing point; a per-point tuple must match ``points``."""
        if isinstance(self.directions, str):
            return (self.directions,) * points
        if len(self.directions) != points:
            raise ConfigError(
                f"HKTConfig.directions = {self.directions!r} is invalid: it names "
                f"{len(self.directions)} points but the alignment has {points} mixing point(s)")
        return self.directions


@attrs.frozen
class TrainConfig:
    """Optimisation settings shared by every method."""

    epochs: int = attrs.field(default=10, validator=positive_int)
    batch_size: int = attrs.field(default=64, validator=positive_int)
    optimizer: str = attrs.field(default="sgd", validator=one_of(OPTIMIZERS))
    lr: float = attrs.field(default=0.1, validator=in_range(0.0, 10.0, lo_open=True))
    momentum: float = attrs.field(default=0.9, validator=in_range(0.0, 1.0))
    nesterov: bool = True
    weight_decay: float = attrs.field(default=5e-4, validator=non_negative)
    schedule: str = attrs.field(default="cosine", validator=one_of(SCHEDULES))
    milestones: tuple[float, ...] = attrs.field(default=(0.5, 0.75), converter=tuple)
    gamma: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, lo_open=True))
    #: epochs of a linear ramp from 0 to ``lr`` before the schedule (counted in its epochs)
    warmup_epochs: int = attrs.field(default=0, validator=non_negative_int)
    grad_clip: float = attrs.field(default=0.0, validator=non_negative)
    val_fraction: float = attrs.field(default=0.1, validator=in_range(0.0, 0.9, lo_open=True))
    #: train on this many samples of the training split (a fixed subset, the same for every method
    #: and seed; the validation split is unchanged); 0 = all of it (hkt_core.train.data)
    train_samples: int = attrs.field(default=0, validator=non_negative_int)
    seed: int = attrs.field(default=0, validator=in_range(0, SEED_MAX))
    device: str = attrs.field(default="cpu", validator=one_of(DEVICES))
    #: DEPRECATED spellings, moved to the options of the methods that distil (``kd``, ``hkt-kd``,
    #: ``fitnet-kd``: ``method.temperature``, ``method.weight``; :data:`MOVED_SETTINGS`). None: not
    #: given. A value read here (a card's ``[train]``, ``--set train.kd_weight=``, an old run's
    #: config.toml) is moved to the method's option when a run is resolved (hkt_core.train.setup.api).
    kd_temperature: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(in_range(0.0, 100.0, lo_open=True)))
    kd_weight: float | None = attrs.field(default=None, validator=attrs.validators.optional(in_range(0.0, 1.0)))
    num_workers: int = attrs.field(default=0, validator=non_negative_int)
    #: autocast precision of the training forwards (hkt_core.train.precision)
    precision: str = attrs.field(default="fp32", validator=one_of(PRECISIONS))
    #: torch.compile the networks and the Family's lockstep step (hkt_core.train.compiling)
    compile: bool = attrs.field(default=False, validator=boolean)
    #: channels-last memory format for 2-D image models (hkt_core.train.memory_format)
    channels_last: bool = attrs.field(default=False, validator=boolean)
    #: torch intra-op threads while the run trains (the same default in every command; a different
    #: count sums in another order, so it is another run: part of the run's identity and of the
    #: parent cache key)
    threads: int = attrs.field(default=1, validator=positive_int)
    #: fold the frozen parent's BatchNorms into its convolutions (hkt_core.lockstep.fold; float32 rounding)
    fold_parent_bn: bool = attrs.field(default=True, validator=boolean)
    #: Genetic Attention on SDPA's fused kernels (hkt_core.etm.attention; float32 rounding)
    fused_attention: bool = attrs.field(default=True, validator=boolean)

    @milestones.validator
    def _check_milestones(self, attribute, value):
        if any(not (0 < m < 1) for m in value) or list(value) != sorted(value):
            raise _fail("TrainConfig", "milestones", value,
                        "must be increasing fractions of the run in (0, 1), e.g. [0.5, 0.75]")


#: The HKTConfig fields that name a registered operator, and the registry each one is looked up in.
REGISTERED_FIELDS: dict[str, str] = {"mixture": "mixtures", "transfer": "transfers", "extractor": "extractors"}


def check_registered(hkt: HKTConfig, manager: Any, *, changed_from: HKTConfig | None = None) -> None:
    """Each operator ``hkt`` names is registered with ``manager`` (a plugin manager), else one line
    naming the setting, a close registered name ("did you mean 'ga'?") and all of them. With
    ``changed_from``, only the fields whose value differs from it are checked (what a command line
    changed; a card's own names are the pre-flight's to judge)."""
    from .errors import RegistryError, not_registered_message

    for field, kind in REGISTERED_FIELDS.items():
        value = getattr(hkt, field)
        if changed_from is not None and getattr(changed_from, field) == value:
            continue
        try:
            manager.lookup(kind, value)
        except RegistryError:
            raise ConfigError(not_registered_message(f"hkt.{field}", value, kind,
                                                     manager.registry(kind).names())) from None


#: Defaults that changed (``dotted key: (old, new)``), for runs written under the old ones: such a
#: run resumes with the value it recorded (hkt_core.train.api.resolve), and the card's copy of the
#: setting is not compared where the run's own one is (hkt_core.train.identity).
CHANGED_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "hkt.inherit_loss": ("mae", "task"),
    "hkt.alphas": ([0.25, 0.5, 0.25], [0.1, 0.8, 0.1]),
    "train.kd_weight": (0.9, 0.5),
}


#: Settings that moved (``dotted key: the method option it became``): the distillation temperature
#: and weight are options of the methods that distil (``kd``, ``hkt-kd``, ``fitnet-kd``). The old
#: spelling keeps working: ``--set train.kd_weight=0.9``, a card's ``[train] kd_weight`` and an old
#: run folder's recorded ``[train]`` are read as ``method.weight`` for a method that takes it and
#: ignored for one that does not (hkt_core.train.setup.api.resolve, hkt_core.train.folders.identity),
#: with a one-line deprecation notice.
MOVED_SETTINGS: dict[str, str] = {"train.kd_temperature": "temperature", "train.kd_weight": "weight"}
#: What the moved settings were when they were :class:`TrainConfig` fields (their last defaults):
#: a parent cache key computed before the move holds them (hkt_core.train.folders.parents).
MOVED_DEFAULTS: dict[str, Any] = {"train.kd_temperature": 4.0, "train.kd_weight": 0.5}
_moved_said: set[str] = set()


def say_moved(dotted: str) -> None:
    """The one-line deprecation notice of a moved setting (:data:`MOVED_SETTINGS`), once per process."""
    if dotted in _moved_said:
        return
    _moved_said.add(dotted)
    import warnings

    option = MOVED_SETTINGS[dotted]
    warnings.warn(f"setting {dotted} is deprecated: it is now the option `{option}` of the methods that distil "
                  f"(kd, hkt-kd, fitnet-kd): --set method.{option}=..., method_options={{{option!r}: ...}}",
                  DeprecationWarning, stacklevel=3)


converter = cattrs.Converter()


#: Settings that existed once and are dropped on reading, with a deprecation notice: config.toml
#: files, cards and ``--set`` written before keep loading. ``hkt.task`` named a task training never
#: used (the card's ``task`` is the run's).
REMOVED_SETTINGS: dict[str, str] = {
    "hkt.task": "the task is the card's `task` (a Family built by hand takes task=); [hkt] task is ignored",
}
_SECTION_OF = {"HKTConfig": "hkt", "TrainConfig": "train"}
_removed_said: set[str] = set()


def drop_removed(data: dict[str, Any], section: str) -> dict[str, Any]:
    """``data`` without the settings of ``section`` that :data:`REMOVED_SETTINGS` lists (said once each)."""
    gone = [k for k in data if f"{section}.{k}" in REMOVED_SETTINGS]
    if not gone:
        return data
    import warnings

    for key in gone:
        dotted = f"{section}.{key}"
        if dotted not in _removed_said:
            _removed_said.add(dotted)
            warnings.warn(f"setting {dotted} was removed: {REMOVED_SETTINGS[dotted]}", DeprecationWarning,
                          stacklevel=3)
    return {k: v for k, v in data.items() if k not in gone}


def structure(data: dict[str, Any], cls: type) -> Any:
    """Build ``cls`` from plain data; unknown keys are refused with the allowed ones listed
    (settings that were removed, :data:`REMOVED_SETTINGS`, are dropped with a notice)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a table of settings, got {type(data).__name__}")
    if cls.__name__ in _SECTION_OF:
        data = drop_removed(data, _SECTION_OF[cls.__name__])
    allowed = {a.name for a in attrs.fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(allowed))}")
    _check_types(data, cls)
    try:
        return converter.structure(data, cls)
    except ConfigError:
        raise
    except cattrs.BaseValidationError as exc:
        inner = [e for e in getattr(exc, "exceptions", []) if isinstance(e, ConfigError)]
        if inner:
            raise inner[0] from None
        raise ConfigError(f"{cls.__name__}: {cattrs.transform_error(exc)}") from None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expects(tp: Any) -> tuple[str, Callable[[Any], bool]]:
    """What a field of declared type ``tp`` takes, in words, and the test a value must pass. The
    words name the type as the error lines say it (``must be a number``); the test is strict: no
    string stands for a number and no number for a boolean."""
    import types
    import typing

    if tp is bool:
        return "true or false", lambda v: isinstance(v, bool)
    if tp is int:
        return "an integer", lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, float) and v.is_integer())
    if tp is float:
        return "a number", _number
    if tp is str:
        return "a string", lambda v: isinstance(v, str)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        inner = args[0] if args else Any
        words, test = _expects(inner) if inner is not Any else ("a value", lambda v: True)
        count = "" if (not args or args[-1] is Ellipsis) else f"{len(args)} "
        plural = {"a number": "numbers", "a string": "strings", "an integer": "integers"}.get(words, "values")
        return (f"a list of {count}{plural}",
                lambda v: isinstance(v, (list, tuple)) and all(test(x) for x in v))
    if origin is dict:
        return "a table (e.g. {key = 1})", lambda v: isinstance(v, dict)
    if origin in (typing.Union, types.UnionType):
        options = [_expects(a) for a in args]
        return " or ".join(w for w, _ in options), lambda v: any(t(v) for _, t in options)
    return f"a {getattr(tp, '__name__', tp)}", lambda v: True


def _field_types(cls: type) -> dict[str, Any]:
    return {f.name: f.type for f in attrs.fields(attrs.resolve_types(cls))}


def _check_types(data: dict[str, Any], cls: type) -> None:
    """Each setting has its field's type, checked before anything converts it: ``lr = "abc"`` is one
    line naming the field, the value and the type, and 1.9 epochs is refused, never truncated."""
    for name, tp in _field_types(cls).items():
        if name not in data:
            continue
        words, fits = _expects(tp)
        if not fits(data[name]):
            raise _fail(cls.__name__, name, data[name], f"must be {words}")


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)


def to_toml(data: dict[str, Any]) -> str:
    return tomli_w.dumps(_tomlable(data))


def _tomlable(value: Any) -> Any:
    if attrs.has(type(value)):
        value = unstructure(value)
    if isinstance(value, dict):
        return {k: _tomlable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_tomlable(v) for v in value]
    return value


def read_toml(path: str | Path) -> dict[str, Any]:
    from .io import MAX_BYTES, parse_toml

    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path} is {path.stat().st_size:,} bytes: larger than any TOML file hkt reads "
                              f"(at most {MAX_BYTES:,})")
        return parse_toml(path.read_text(encoding="utf-8"), str(path), ConfigError)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; give the path of a .toml file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); a TOML file must be UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (numbers, booleans, arrays), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


#: what ``--set card.*`` cannot reach, and where it is changed instead
_CARD_HINT = ("; the card's other fields (models and their options, data, alignment) are changed in a "
              "card of your own: `hkt pairs new`")


def _what_is_here(node: dict[str, Any], path: list[str]) -> str:
    """The sections and settings under ``path`` of an override tree, for an error message."""
    sections = sorted(k for k, v in node.items() if isinstance(v, dict))
    if not path:
        return f"sections here: {', '.join(sections) or 'none'}"
    settings = sorted(k for k, v in node.items() if not isinstance(v, dict))
    held = []
    if sections:
        held.append(f"section(s) {', '.join(sections)}")
    if settings:
        held.append(f"setting(s) {', '.join(settings)}")
    return (f"{'.'.join(path)!r} holds {' and '.join(held) or 'nothing'}"
            + (_CARD_HINT if path[0] == "card" else ""))


#: The sections of ``--set`` that hold a record's fields (``train.lr``): a value of the wrong type
#: is refused where it is given, naming the assignment.
OVERRIDE_RECORDS: dict[str, type] = {"train": TrainConfig, "parent_train": TrainConfig, "hkt": HKTConfig}


def check_override_type(key: str, raw: str, value: Any,
                        records: dict[str, type] | None = None) -> None:
    """Refuse ``--set KEY=RAW`` (``value``: RAW as read) when KEY is a field of a record
    (:data:`OVERRIDE_RECORDS`) and ``value`` is not of its type, in one line: ``--set hkt.lam=abc:
    HKTConfig.lam = 'abc' is invalid: must be a number``. Ranges and choices are the record's own checks."""
    parts = key.split(".")
    records = OVERRIDE_RECORDS if records is None else records
    if len(parts) != 2 or parts[0] not in records:
        return
    tp = _field_types(records[parts[0]]).get(parts[1])
    if tp is None:
        return
    words, fits = _expects(tp)
    if not fits(value):
        raise ConfigError(f"--set {key}={raw}: {_fail(records[parts[0]].__name__, parts[1], value, f'must be {words}')}")


def apply_overrides(data: dict[str, Any], assignments: list[str],
                    open_sections: tuple[str, ...] = ()) -> dict[str, Any]:
    """Apply ``a.b=value`` assignments to a nested dict (a copy); unknown paths are refused, and so
    is a value of the wrong type for a record's field (:func:`check_override_type`).

    Sections named in ``open_sections`` (dotted paths of keyword options passed on to a factory,
    such as a data set's or ``hkt.mixture_options``) accept new keys; the factory itself judges them.
    """
    import copy

    out = copy.deepcopy(data)
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=0.05")
        key, raw = assignment.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"--set {key}: no section {'.'.join(parts[:i + 1])!r}; "
                                  + _what_is_here(node, parts[:i]))
            node = node[part]
        leaf = parts[-1]
        if leaf not in node and ".".join(parts[:-1]) not in open_sections:
            raise ConfigError(f"--set {key}: unknown setting {leaf!r}; allowed: {', '.join(sorted(node))}")
        value = parse_value(raw.strip())
        check_override_type(key.strip(), raw.strip(), value)
        node[leaf] = value
    return out
