"""``hkt pairs new``: a complete, commented pair card written from two models and a data set.

The data set is loaded once (with its default options) for the facts a card must state: the input
shapes and, for class-score tasks, the class count. The keyword options of the two model
factories and of the data set factory are listed as comments with their defaults, so the card
shows every knob without setting any. The card is parsed back before it is written: what
``hkt pairs new`` writes, ``hkt pairs add`` accepts.

The training recipe fits the models' family (:func:`recipe_for`): each model is built once as the
card would build it with no options (or, for a source that needs options, as its registered
example), and a model with attention layers starts from the transformer recipe (AdamW, a warm-up
then linear decay, a learning rate by its size); any other from the convolutional one (SGD with
momentum and Nesterov, cosine). ``[train]`` follows the child, ``[parent_train]`` the parent where
it differs.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import HKTConfig, TrainConfig, unstructure
from ..errors import ConfigError, HKTError
from .card import NAME_RE, PairCard, read_toml_text

if TYPE_CHECKING:
    from ..plugins.host import PluginManager


def _factory(kind: str, ref: str, manager):
    if ":" in ref:
        from ..models import resolve_callable

        return resolve_callable(ref, kind, manager)
    return manager.lookup(kind, ref)


def _toml_value(value: Any) -> str | None:
    """A default as TOML text, or None when TOML cannot hold it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str, bool)) for v in value):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return None


def option_comments(factory) -> list[str]:
    """``# name = default`` for each keyword option of ``factory`` (``# name = ...`` when required)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    lines = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
            continue
        if p.default is p.empty:
            lines.append(f"# {p.name} = ...   (required)")
            continue
        text = _toml_value(p.default)
        lines.append(f"# {p.name} = {text}" if text is not None else f"# {p.name}: default {p.default!r}")
    return lines


def _assignments(options: dict[str, Any]) -> list[str]:
    """``name = value`` lines of options given on the command line or proposed (tables inline)."""
    from ..config import to_toml

    lines = []
    for key, value in options.items():
        if isinstance(value, dict):
            inner = ", ".join(to_toml({k: v}).strip() for k, v in value.items() if v is not None)
            lines.append(f"{to_toml({key: 0}).strip()[:-4]} = {{ {inner} }}" if inner else f"{key} = {{}}")
        elif value is not None:
            lines.extend(to_toml({key: value}).strip().splitlines())
    return lines


def propose(factory, given: dict[str, Any], *, role: str, parent: tuple[str, dict[str, Any]] | None = None,
            info: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """``(options, note)``: the options a factory's ``propose_options`` hook completes for a new card
    (a pretrained folder's architecture, a child proposed from its parent, a data set's tokenizer
    from the parent's folder), or ``given`` as it is when the factory has no hook."""
    hook = getattr(factory, "propose_options", None)
    if hook is None:
        return dict(given), ""
    options, note = hook(dict(given), role=role, parent=parent, info=info)
    return dict(options), str(note or "")


def _absolute(factory, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the factory's path options (:func:`~hkt_core.pairs.card.path_options`) made
    absolute against the working folder, where the command line gave them."""
    from .card import path_options, resolve_path

    names = path_options(factory)
    return {k: resolve_path(v, Path.cwd()) if k in names else v for k, v in options.items()}


def _relative(factory, options: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``options`` with the factory's absolute path options written relative to the card's folder
    when they lie under it (the card and its files move together), else absolute."""
    import os

    from .card import path_options

    def rel(value: Any) -> Any:
        if isinstance(value, list):
            return [rel(v) for v in value]
        if not isinstance(value, str) or not os.path.isabs(value):
            return value
        try:
            inside = Path(value).resolve().relative_to(folder.resolve())
        except ValueError:
            return value
        return inside.as_posix() or "."

    names = path_options(factory)
    return {k: rel(v) if k in names else v for k, v in options.items()}


def _section(title: str, lines: list[str], note: str) -> list[str]:
    return [f"[{title}]", f"# {note}", *(lines or ["# (the factory takes no keyword options)"]), ""]


def _table(config) -> list[str]:
    """``key = value`` lines of a record, nested tables inline (``mixture_options = {}``)."""
    from ..config import to_toml

    data = unstructure(config)
    nested = {k: data.pop(k) for k in list(data) if isinstance(data[k], dict)}
    lines = to_toml(data).strip().splitlines()
    for key, table in nested.items():
        inner = ", ".join(to_toml({k: v}).strip() for k, v in table.items())
        lines.append(f"{key} = {{{inner}}}" if inner else f"{key} = {{}}")
    return lines


#: The transformer recipe (models with attention layers): AdamW with decoupled weight decay 0.01,
#: one epoch of linear warm-up then a linear decay to 0, gradients clipped at norm 1, 15 epochs (the
#: recipe of BERT and its fine-tuning scripts, Devlin et al. 2019; the learning rate: below).
TRANSFORMER_RECIPE: dict[str, Any] = {"optimizer": "adamw", "weight_decay": 0.01, "schedule": "linear",
                                      "warmup_epochs": 1, "grad_clip": 1.0, "epochs": 15}
#: The transformer recipe's peak learning rate by the size of the model trained from scratch: (at most
#: this many parameters, learning rate), the first that fits. Smaller transformers take larger rates:
#: GPT-3's table of sizes (Brown et al. 2020) has 6e-4 at 125M parameters and 3e-4 at 350M-760M; the
#: small models of a distillation pair (thousands to millions of parameters) train at 1e-3, where
#: SGD at 1e-3 left a BERT child predicting the majority class.
TRANSFORMER_LR: tuple[tuple[float, float], ...] = ((20e6, 1e-3), (200e6, 6e-4), (float("inf"), 3e-4))
#: The learning rate for a transformer that loaded pretrained weights (fine-tuning: the upper end of
#: BERT's fine-tuning range 2e-5..5e-5).
FINE_TUNING_LR = 5e-5


def attention_layers(model) -> list[str]:
    """The class names of ``model``'s attention layers (``nn.MultiheadAttention``, or any module whose
    class name ends in ``Attention``, as torch, transformers and timm name them), each once."""
    from torch import nn

    found = [type(m).__name__ for m in model.modules()
             if isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention")]
    return list(dict.fromkeys(found))


def sample_model(ref: str, factory, manager, options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(model, how)``: the model a card naming ``ref`` builds with ``options`` (default none: ``how``
    = ``"defaults"``), else the example its source registered (its ``contract_options``: ``how`` =
    ``"example"``), else ``(None, "")`` when neither builds. Nothing downloads: model sources never do."""
    from torch import nn

    attempts = [(dict(options), "defaults")] if options else []
    attempts.append(({}, "defaults"))
    if ":" not in ref:
        try:
            example = manager.registry("models").entry(ref).metadata.get("contract_options")
        except HKTError:
            example = None
        if isinstance(example, dict):
            attempts.append((dict(example), "example"))
    for options, how in attempts:
        try:
            model = factory(**options)
        except Exception:  # the factory needs options the card does not have yet
            continue
        if isinstance(model, nn.Module):
            return model, how
    return None, ""


def recipe_for(model, how: str) -> tuple[dict[str, Any], str]:
    """``(TrainConfig settings, why)`` of the recipe that fits ``model`` (see the module docstring):
    ``{}`` is the convolutional recipe (TrainConfig's defaults), which a model that could not be built
    (None) gets too; ``why`` says which and why, for the card's comments."""
    if model is None:
        return {}, ("the convolutional recipe (SGD): the model needs options to be built; for a transformer, "
                    "set the transformer recipe (" + _TRANSFORMER_WORDS + ")")
    layers = attention_layers(model)
    if not layers:
        return {}, "the convolutional recipe (SGD with momentum and Nesterov, cosine): no attention layers"
    size = sum(p.numel() for p in model.parameters())
    shown = ", ".join(layers[:2])
    if getattr(model, "hkt_pretrained", None):
        return ({**TRANSFORMER_RECIPE, "lr": FINE_TUNING_LR},
                f"the transformer recipe at the fine-tuning rate: attention layers ({shown}) and pretrained "
                f"weights; {_TRANSFORMER_WORDS}")
    lr = next(rate for most, rate in TRANSFORMER_LR if size <= most)
    sized = (f"{size:,} parameters" if how == "defaults" else
             "its size follows its options: set lr by the rule once they are written")
    return ({**TRANSFORMER_RECIPE, "lr": lr},
            f"the transformer recipe: attention layers ({shown}), {sized}; {_TRANSFORMER_WORDS}")


#: The transformer recipe in words, for the card's comments.
_TRANSFORMER_WORDS = ("AdamW, 1 epoch of warm-up then linear decay to 0, lr by size trained from scratch: "
                      "1e-3 up to 20M parameters, 6e-4 up to 200M, 3e-4 above, 5e-5 to fine-tune pretrained "
                      "weights; momentum and nesterov are SGD's (unused)")


def _comment(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, 98, initial_indent="# ", subsequent_indent="# ")


def _recipe_lines(settings: dict[str, Any]) -> list[str]:
    from ..config import to_toml

    return to_toml(settings).strip().splitlines() if settings else []


def card_text(name: str, *, parent: str, child: str, dataset: str, task: str, stages: int,
              input_shapes, num_classes: int | None, factories: dict[str, Any],
              input_dtypes: tuple[str, ...] = (), dataset_options: dict[str, Any] | None = None,
              recipes: dict[str, tuple[dict[str, Any], str]] | None = None,
              parent_options: dict[str, Any] | None = None, child_options: dict[str, Any] | None = None,
              notes: dict[str, str] | None = None) -> str:
    """The commented card (see the module docstring). ``recipes``: ``{"parent"|"child": (settings,
    reason)}`` from :func:`recipe_for` (default: the convolutional recipe for both)."""
    recipes = recipes or {}
    child_recipe, child_reason = recipes.get("child", ({}, ""))
    parent_recipe, parent_reason = recipes.get("parent", ({}, ""))
    train = TrainConfig(**child_recipe)
    defaults = unstructure(TrainConfig())
    as_parent = {**defaults, **parent_recipe}
    # the parent's recipe where it differs from the child's ([parent_train] starts from [train])
    parent_lines = _recipe_lines({k: v for k, v in as_parent.items()
                                  if k in {*parent_recipe, *child_recipe} and unstructure(train)[k] != v})
    shapes = json.dumps([list(s) for s in input_shapes])
    classes = (f"# the data set has {num_classes} classes: both models must predict {num_classes} scores per sample"
               if num_classes is not None else "# the data set states no class count (info['num_classes'])")
    lines = [
        f"# Pair card written by `hkt pairs new {name}`. Next: `hkt pairs check <this file>`, then",
        "# `hkt pairs add <this file>`, then `hkt train " + name + " --method hkt`.",
        "# module:callable references resolve against this card's folder and sys.path.",
        "",
        f"name = {json.dumps(name)}",
        f"description = {json.dumps(f'{parent} -> {child} on {dataset}')}",
        f"task = {json.dumps(task)}                 # a registered task (`hkt list losses`)",
        f"parent = {json.dumps(parent)}",
        f"child = {json.dumps(child)}",
        f"dataset = {json.dumps(dataset)}",
        f"input_shapes = {shapes}   # one example input per model input, batch dimension first (from the data set)",
        *([f"input_dtypes = {json.dumps(list(input_dtypes))}   # each input's dtype (from the data set)"]
          if input_dtypes else []),
        classes,
        f"stages = {stages}                        # nHKT: {stages - 1} mixing point(s) + the predictions;"
        " `hkt train --stages N` tries another",
        "",
        *_section("parent_options", [*_comment_note(notes, "parent"), *_assignments(parent_options or {}),
                                     *_unset(option_comments(factories["parent"]), parent_options)], "keyword options of the parent factory"),
        *_section("child_options", [*_comment_note(notes, "child"), *_assignments(child_options or {}),
                                    *_unset(option_comments(factories["child"]), child_options)], "keyword options of the child factory"),
        *_section("dataset_options", [*_comment_note(notes, "dataset"), *_assignments(dataset_options or {}),
                                      *_unset(option_comments(factories["dataset"]), dataset_options)], "keyword options of the data set"),
        "[alignment]",
        "# leave empty to align automatically (`hkt align " + name + "` shows the choice), or name the mixing",
        "# points by hand, in forward order (the predictions pair is implied):",
        "# pairs = [[\"parent_node\", \"child_node\"]]",
        "# state a value's kind where the automatic guess is wrong (map, tokens or vector):",
        "# layouts = {\"encoder.out\" = \"tokens\"}",
        "",
        "[train]",
        "# a starting recipe for the child (the parent trains with the same, plus [parent_train]); KD's",
        "# temperature 4 and weight 0.5 (method.temperature, method.weight) are the benchmark's choice;",
        "# threads: torch intra-op threads per run (another count is another run)",
        *(_comment(f"the child: {child_reason}") if child_reason else []),
        *_table(train),
        "",
        "[parent_train]",
        "# overrides of [train] for training the parent, e.g.",
        "# epochs = 30",
        *(_comment(f"the parent: {parent_reason}" if parent_reason != child_reason else
                   "the parent: the same recipe") if parent_reason else []),
        *parent_lines,
        "",
        "[hkt]",
        "# how the family mixes and weights its losses (docs/training.md). These are the measured best: the",
        "# settings the quality benchmark's validation search chose on its positive-control pair (task loss in",
        "# L1/L3, alphas 0.1/0.8/0.1, lam 0.6; docs/RESULTS.md). The paper's literal settings (MAE in L1/L3,",
        "# alphas 0.25/0.5/0.25), measured behind the child trained alone there, are one preset away:",
        "# `hkt train ... --set hkt.preset=paper`, or here: inherit_loss = \"mae\", alphas = [0.25, 0.5, 0.25]",
        *_table(HKTConfig()),
        "",
    ]
    return "\n".join(lines)


def _unset(comments: list[str], options: dict[str, Any] | None) -> list[str]:
    """The option comments of the options not set in ``options``."""
    import re

    names = set(options or {})
    return [line for line in comments
            if (m := re.match(r"# (\w+)[ :=]", line)) is None or m.group(1) not in names]


def _comment_note(notes: dict[str, str] | None, role: str) -> list[str]:
    note = (notes or {}).get(role)
    return _comment(f"proposed by the source: {note}; edit freely") if note else []


def sample_dtypes(bundle) -> tuple[str, ...]:
    """The dtypes of the first training sample's inputs, when any is not float32 (token ids), else ()."""
    import torch

    from ..data import as_pairs
    from .card import INPUT_DTYPES

    try:
        inputs = as_pairs(bundle).train[0][0]   # mapping samples read as (inputs, target)
    except Exception:  # an empty or unreadable split: the pre-flight reports it
        return ()
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    names = tuple(str(t.dtype).removeprefix("torch.") if isinstance(t, torch.Tensor) else "" for t in inputs)
    if all(n == "float32" for n in names) or not all(n in INPUT_DTYPES for n in names):
        return ()
    return names


def write_new_card(name: str, *, parent: str, child: str, dataset: str, task: str | None = None,
                   stages: int = 2, out: str | Path | None = None, force: bool = False,
                   dataset_options: dict[str, Any] | None = None, parent_options: dict[str, Any] | None = None,
                   child_options: dict[str, Any] | None = None, manager: PluginManager) -> Path:
    """Write the card of a new pair to ``out`` (default ``NAME.toml``); returns its path.

    Options given here (relative paths against the working folder) are completed by each
    factory's ``propose_options`` hook (:func:`propose`), in this order: the parent's, the data
    set's (seeing the parent's), the child's (seeing the parent's and the data set's facts). Path
    options are written relative to the card's folder when they lie under it, else absolute."""
    from ..data import DatasetBundle

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"pair name {name!r} is invalid: lowercase letters and digits separated by single "
                          f"hyphens, e.g. 'tabular-transformer-mlp'")
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 2:
        raise ConfigError(f"--stages {stages!r} is invalid: an integer >= 2 (N-1 mixing points plus the outputs)")
    path = Path(out) if out is not None else Path(f"{name}.toml")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pick another file with -o or pass --force")
    factories = {"parent": _factory("models", parent, manager), "child": _factory("models", child, manager),
                 "dataset": _factory("datasets", dataset, manager)}
    notes: dict[str, str] = {}
    parent_options, notes["parent"] = propose(factories["parent"], _absolute(factories["parent"], parent_options or {}),
                                              role="parent")
    dataset_options, notes["dataset"] = propose(factories["dataset"],
                                                _absolute(factories["dataset"], dataset_options or {}),
                                                role="dataset", parent=(parent, parent_options))
    with_options = (f"with the options {', '.join(f'{k}={v!r}' for k, v in dataset_options.items())}"
                    if dataset_options else "with its default options")
    try:
        bundle = factories["dataset"](**dataset_options)
    except HKTError as exc:
        if dataset_options:
            raise
        raise ConfigError(f"{exc} (give options with --dataset-option KEY=VALUE)") from None
    except Exception as exc:  # the user's data set
        raise ConfigError(f"data set {dataset!r} failed to load {with_options} ({type(exc).__name__}: "
                          f"{exc}); `hkt pairs new` reads its input shapes and class count from it "
                          f"(options: --dataset-option KEY=VALUE)") from None
    if not isinstance(bundle, DatasetBundle):
        raise ConfigError(f"data set {dataset!r} returned {type(bundle).__name__}, not a DatasetBundle")
    info = dict(bundle.info or {})
    task = task or info.get("task") or "classification"
    manager.lookup("tasks", task)
    classes = info.get("num_classes")
    child_options, notes["child"] = propose(factories["child"], _absolute(factories["child"], child_options or {}),
                                            role="child", parent=(parent, parent_options), info=info)
    built = {"parent": parent_options, "child": child_options}
    recipes = {role: recipe_for(*sample_model(ref, factories[role], manager, built[role]))
               for role, ref in (("parent", parent), ("child", child))}
    folder = path.parent if path.parent != Path("") else Path(".")
    text = card_text(name, parent=parent, child=child, dataset=dataset, task=task, stages=stages,
                     input_shapes=[(1, *s) for s in bundle.input_shapes],
                     num_classes=classes if isinstance(classes, int) else None, factories=factories,
                     input_dtypes=sample_dtypes(bundle), recipes=recipes, notes=notes,
                     dataset_options=_relative(factories["dataset"], dataset_options, folder),
                     parent_options=_relative(factories["parent"], parent_options, folder),
                     child_options=_relative(factories["child"], child_options, folder))
    PairCard.from_dict(read_toml_text(text, str(path)), source=str(path))  # what we write, `pairs add` reads
    from ..io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path
