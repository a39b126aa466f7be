"""The architecture registry's records: parent/child pair cards.

A card is a TOML file::

    name = "digits-demo"            # lowercase letters and digits, single hyphens, at most 64 characters
    task = "classification"          # a registered task (losses registry)
    parent = "digits_cnn_large"      # registered model name or "module:callable"
    child = "digits_cnn_small"
    input_shapes = [[1, 1, 8, 8]]    # example input shape(s), batch dimension included
    input_dtypes = ["float32"]       # optional: each example input's dtype (token ids: "int64")
    dataset = "digits"
    stages = 2                       # nHKT: aligned pairs, the last is the predictions
    description = "..."

    [parent_options]  /  [child_options]  /  [dataset_options]   # keyword arguments
    [parent_dataset_options]         # the parent's own data: keys replacing [dataset_options]'s
                                     # when the parent is trained (e.g. a larger sample)
    [alignment]
    pairs = [["pool", "pool"]]       # optional explicit alignment (mixing points; outputs implied)
    layouts = {"encoder.out" = "tokens"}   # optional: a value's kind (map, tokens, vector)
    [train]                          # defaults for hkt_core.config.TrainConfig
    [hkt]                            # defaults for hkt_core.config.HKTConfig

Cards come from ``registry/`` (shipped inside the distribution), from plugins
(``hkt_register_pairs``) and from the user's folder ``$HKT_HOME/pairs``.
"""

from __future__ import annotations

import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from ..config import HKTConfig, TrainConfig, read_toml, structure, to_toml, unstructure
from ..errors import ConfigError

#: A pair name: lowercase letters and digits separated by single hyphens, the whole string (``\A..\Z``:
#: no trailing newline slips through, whether it is matched or fully matched).
NAME_RE = re.compile(r"\A[a-z0-9]+(-[a-z0-9]+)*\Z")
#: The longest pair name. File names are made from it (the stored card ``<name>.toml``, the default run
#: folder ``<name>-<method>-<YYYYmmdd-HHMMSS>``); at 64 characters they stay under 143 bytes, the
#: shortest file-name limit of common file systems (eCryptfs; ext4, XFS, btrfs, APFS and NTFS allow 255).
MAX_NAME = 64


def hkt_home() -> Path:
    """``$HKT_HOME``, default the user's data directory for ``hkt``."""
    env = os.environ.get("HKT_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("hkt"))


def _shapes(value: Any) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"PairCard.input_shapes = {value!r} is invalid: give a list of shapes, "
                          f"e.g. [[1, 3, 32, 32]]")
    if all(isinstance(v, int) for v in value):
        value = [value]
    out = []
    for shape in value:
        if (not isinstance(shape, (list, tuple)) or len(shape) < 2
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
            raise ConfigError(f"PairCard.input_shapes = {value!r} is invalid: each shape is a list of "
                              f"positive integers with the batch dimension first, e.g. [1, 3, 32, 32]")
        if shape[0] > MAX_EXAMPLE_BATCH or math.prod(shape) > MAX_EXAMPLE_ELEMENTS:
            raise ConfigError(f"PairCard.input_shapes = {value!r} is invalid: {list(shape)} is an example input of "
                              f"{math.prod(shape):,} values; the batch dimension may be at most {MAX_EXAMPLE_BATCH} "
                              f"and a shape at most {MAX_EXAMPLE_ELEMENTS:,} values (the training batch size is "
                              f"train.batch_size, not this)")
        out.append(tuple(shape))
    return tuple(out)


#: Bounds of a card's example input shapes (they are allocated to trace and align the models).
MAX_EXAMPLE_BATCH = 1024
MAX_EXAMPLE_ELEMENTS = 1 << 26


#: The dtypes a card's ``input_dtypes`` may name (torch dtypes by their short names).
INPUT_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")


def _dtypes(value: Any) -> tuple[str, ...]:
    """``input_dtypes``: one allowed dtype name per input (empty: the models' adapters decide)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v in INPUT_DTYPES for v in value):
        raise ConfigError(f"PairCard.input_dtypes = {value!r} is invalid: a list with one dtype per input, each one "
                          f"of {', '.join(INPUT_DTYPES)}, e.g. [\"int64\", \"int64\"] for token ids and a mask")
    return tuple(value)


def _alignment(value: Any) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    pairs = value.get("pairs") if isinstance(value, dict) else value
    if pairs is None:
        return None
    ok = isinstance(pairs, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(s, str) and s for s in p) for p in pairs)
    if not ok or not pairs:
        raise ConfigError(f"PairCard.alignment = {value!r} is invalid: expected "
                          f"[alignment] pairs = [[\"parent_node\", \"child_node\"], ...]")
    return tuple((p[0], p[1]) for p in pairs)


def _layouts(value: Any) -> dict[str, str]:
    """``{"node" | "parent:node" | "child:node": "map" | "tokens" | "vector"}`` (tokens may add
    ``+cls`` and a grid, ``"tokens+cls 4x4"``: :func:`hkt_core.trace.kinds.parse_stated`)."""
    from ..errors import AlignmentError
    from ..trace.kinds import LEGACY_LAYOUTS, parse_stated

    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise ConfigError(f"[alignment] layouts = {value!r} is invalid: a table of node names, e.g. "
                          f"layouts = {{\"encoder.out\" = \"tokens\"}}")
    for node, kind in value.items():
        try:
            if kind in LEGACY_LAYOUTS:   # a card speaks the one vocabulary
                raise AlignmentError("")
            parse_stated(kind, f"[alignment] layouts[{node!r}]")
        except AlignmentError:
            raise ConfigError(f"[alignment] layouts[{node!r}] = {kind!r} is invalid: one of map, tokens, vector; "
                              f"tokens may add a class token and a grid ('tokens+cls', 'tokens 4x4', "
                              f"'tokens+cls 4x4')") from None
    return dict(value)


def _name(inst, attribute, value):
    check_name(value, "PairCard.name")


def check_name(value: Any, what: str = "pair name") -> None:
    """Refuse a pair name that is not lowercase letters and digits separated by single hyphens, or is
    longer than :data:`MAX_NAME` characters (one line naming the rule)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or len(value) > MAX_NAME:
        long = isinstance(value, str) and len(value) > 80
        shown = f"{value[:40]!r}... ({len(value)} characters)" if long else repr(value)
        raise ConfigError(f"{what} = {shown} is invalid: lowercase letters and digits separated by single "
                          f"hyphens, at most {MAX_NAME} characters, e.g. 'cifar-resnet110-resnet20'")


def _model_ref(inst, attribute, value):
    if not isinstance(value, str) or not value.strip() or value.count(":") > 1:
        raise ConfigError(f"PairCard.{attribute.name} = {value!r} is invalid: a registered model name "
                          f"or 'module:callable'")


def _nonempty(inst, attribute, value):
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"PairCard.{attribute.name} = {value!r} is invalid: must be a non-empty name")


def _table(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"expected a table of keyword options, got {value!r}")
    return dict(value)


@attrs.frozen
class PairCard:
    """A registered parent/child pair with its data, alignment and default settings."""

    name: str = attrs.field(validator=_name)
    task: str = attrs.field(validator=_nonempty)
    parent: str = attrs.field(validator=_model_ref)
    child: str = attrs.field(validator=_model_ref)
    input_shapes: tuple[tuple[int, ...], ...] = attrs.field(converter=_shapes)
    dataset: str = attrs.field(validator=_nonempty)
    stages: int = attrs.field(default=2)
    description: str = ""
    parent_options: dict[str, Any] = attrs.field(factory=dict, converter=_table)
    child_options: dict[str, Any] = attrs.field(factory=dict, converter=_table)
    dataset_options: dict[str, Any] = attrs.field(factory=dict, converter=_table)
    alignment: tuple[tuple[str, str], ...] | None = attrs.field(default=None, converter=_alignment)
    #: ``[alignment] layouts``: the kind of a value where the automatic guess is wrong
    layouts: dict[str, str] = attrs.field(factory=dict, converter=_layouts)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    hkt: HKTConfig = attrs.field(factory=HKTConfig)
    parent_train: dict[str, Any] = attrs.field(factory=dict, converter=_table)
    #: The folder the card was added from (recorded by ``hkt pairs add``); its ``module:callable``
    #: references may name modules there as well as on ``sys.path`` (:mod:`hkt_core.trust`).
    source_folder: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.instance_of(str)))
    parent_dataset_options: dict[str, Any] = attrs.field(factory=dict, converter=_table)
    #: The dtype of each example input (:data:`INPUT_DTYPES`), where the models' adapters cannot
    #: know it (token ids for a model of one's own); empty: the adapters' example inputs as they are.
    input_dtypes: tuple[str, ...] = attrs.field(factory=tuple, converter=_dtypes)

    @input_dtypes.validator
    def _check_dtypes(self, attribute, value):
        if value and len(value) != len(self.input_shapes):
            raise ConfigError(f"PairCard.input_dtypes = {list(value)!r} is invalid: give one dtype per input "
                              f"({len(self.input_shapes)} input_shapes), each one of {', '.join(INPUT_DTYPES)}")

    def parent_data_options(self) -> dict[str, Any]:
        """The data set options the parent is trained with: ``[dataset_options]`` with the keys of
        ``[parent_dataset_options]`` replaced (the same data as the children's when that is empty)."""
        return {**self.dataset_options, **self.parent_dataset_options}

    @stages.validator
    def _check_stages(self, attribute, value):
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise ConfigError(f"PairCard.stages = {value!r} is invalid: an integer >= 2 "
                              f"(nHKT: n-1 mixing points plus the outputs)")
        if self.alignment is not None and len(self.alignment) not in (value - 1, value):
            raise ConfigError(f"PairCard.alignment has {len(self.alignment)} pairs but stages = {value}: "
                              f"give {value - 1} mixing points (the outputs are implied) or all {value} pairs")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "card") -> "PairCard":
        data = dict(data)
        required = ("name", "task", "parent", "child", "input_shapes", "dataset")
        missing = [k for k in required if k not in data]
        if missing:
            raise ConfigError(f"{source}: missing required key(s) {', '.join(missing)}; a card needs "
                              f"{', '.join(required)}")
        allowed = {a.name for a in attrs.fields(cls)} - {"layouts"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        table = data.get("alignment")
        if isinstance(table, dict):
            extra = sorted(set(table) - {"pairs", "layouts"})
            if extra:
                raise ConfigError(f"{source}: unknown key(s) {', '.join(extra)} in [alignment]; allowed: "
                                  f"pairs, layouts")
            data["layouts"] = table.get("layouts")
        train = structure(data.pop("train", {}) or {}, TrainConfig)
        hkt = structure(data.pop("hkt", {}) or {}, HKTConfig)
        try:
            return cls(train=train, hkt=hkt, **data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path, *, stored: bool = False, manager: Any = None) -> "PairCard":
        """A card file; its references resolve beside the file too.

        A card file may have come from anyone, so a ``source_folder`` it states is ignored: its
        folder is the file's own. Only a card of the user's store (``stored=True``, written by
        ``hkt pairs add``) keeps the folder it recorded.

        The relative paths of a card file's options resolve against the file's folder, as its
        ``module:callable`` references do (:func:`resolve_card_paths`; ``manager`` names the
        factories): now when ``manager`` is given, else when the card is resolved for use
        (:meth:`with_resolved_paths`, which every command's resolved pair calls). A stored card
        holds them resolved already.
        """
        path = Path(path)
        try:
            data = read_toml(path)
            if stored:
                data.setdefault("source_folder", str(path.resolve().parent))
            else:
                data["source_folder"] = str(path.resolve().parent)
                if manager is not None:
                    data = resolve_card_paths(data, path.resolve().parent, manager)
            return cls.from_dict(data, source=str(path))
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None

    def with_resolved_paths(self, manager: Any) -> "PairCard":
        """This card with the relative paths of its options joined to its folder
        (:func:`resolve_card_paths`, the factories named in ``manager``); itself when none is relative."""
        if self.source_folder is None:
            return self
        tables = {t: dict(getattr(self, t)) for t, _, _ in OPTION_TABLES}
        data = resolve_card_paths({**tables, "parent": self.parent, "child": self.child, "dataset": self.dataset},
                                  self.source_folder, manager)
        changed = {t: data[t] for t in tables if data[t] != tables[t]}
        return attrs.evolve(self, **changed) if changed else self

    def to_dict(self) -> dict[str, Any]:
        data = unstructure(self)
        if data.get("source_folder") is None:
            data.pop("source_folder", None)
        data["input_shapes"] = [list(s) for s in self.input_shapes]
        if self.input_dtypes:
            data["input_dtypes"] = list(self.input_dtypes)
        else:
            data.pop("input_dtypes", None)
        data.pop("alignment")
        table = dict(data.pop("layouts") and {"layouts": dict(self.layouts)})
        if self.alignment is not None:
            table["pairs"] = [list(p) for p in self.alignment]
        if table:
            data["alignment"] = table
        return data

    def to_toml(self) -> str:
        return to_toml(self.to_dict())


#: A card's option tables whose factory may declare path options: (table, the key naming the factory, its kind).
OPTION_TABLES = (("parent_options", "parent", "models"), ("child_options", "child", "models"),
                 ("dataset_options", "dataset", "datasets"), ("parent_dataset_options", "dataset", "datasets"))


def path_options(factory: Any) -> tuple[str, ...]:
    """The options of a model or data set factory that name local files or folders: its
    ``path_options`` attribute (a tuple of option names), else none."""
    names = getattr(factory, "path_options", ())
    if isinstance(names, str):
        names = (names,)
    return tuple(n for n in names if isinstance(n, str)) if isinstance(names, (list, tuple)) else ()


def resolve_path(value: Any, folder: str | Path) -> Any:
    """A relative local path (a string, or each string of a list) joined to ``folder``; absolute
    paths, ``~`` paths (expanded), URLs and other values are returned as they are (URLs are the
    factory's to refuse)."""
    if isinstance(value, (list, tuple)):
        return [resolve_path(v, folder) for v in value]
    if not isinstance(value, str) or not value.strip() or "://" in value:
        return value
    text = value.strip()
    if text.startswith("~"):
        return os.path.expanduser(text)
    if os.path.isabs(text):
        return value
    return os.path.normpath(os.path.join(str(folder), text))


def _relative_strings(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_relative_strings(v) for v in value)
    return isinstance(value, str) and bool(value.strip()) and not os.path.isabs(value.strip())


def resolve_card_paths(data: dict[str, Any], folder: str | Path, manager: Any = None) -> dict[str, Any]:
    """``data`` (a card's tables) with the relative paths of its options joined to ``folder``.

    An option is a path when the registered factory that receives it declares it in its
    ``path_options`` (:func:`path_options`; e.g. the zoo's ``transformers`` source: ``pretrained``,
    ``weights``). A factory named by ``module:callable`` is not imported to ask (nothing runs while
    a card is read), so its options stay as written, as do those of a name that is not registered
    (the pre-flight reports it)."""
    tables = [(t, ref, kind) for t, ref, kind in OPTION_TABLES
              if isinstance(data.get(t), dict) and any(_relative_strings(v) for v in data[t].values())
              and isinstance(data.get(ref), str) and ":" not in data[ref]]
    if not tables:
        return data
    if manager is None:   # no factories to ask: the options stay as written
        return data
    data = dict(data)
    for table, ref, kind in tables:
        try:
            factory = manager.lookup(kind, data[ref])
        except Exception:  # not registered: the pre-flight names it
            continue
        names = path_options(factory)
        if names:
            data[table] = {k: resolve_path(v, folder) if k in names else v for k, v in data[table].items()}
    return data


def register_cards_from(registry, folder) -> list[PairCard]:
    """Add every ``*.toml`` card under ``folder`` (a path or an importlib Traversable)."""
    cards = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            data = read_toml_text(item.read_text(encoding="utf-8"), item.name)
            card = PairCard.from_dict(data, source=str(item))
            registry.add(card.name, card, description=card.description)
            cards.append(card)
    return cards


def read_toml_text(text: str, source: str) -> dict[str, Any]:
    """A card's TOML text, bounded in size and nesting depth (:func:`hkt_core.io.parse_toml`)."""
    from ..io import parse_toml

    return parse_toml(text, source, ConfigError)


def shipped_cards_folder():
    """The ``registry/`` folder shipped inside the distribution."""
    return resources.files("hkt_core") / "registry_data"
