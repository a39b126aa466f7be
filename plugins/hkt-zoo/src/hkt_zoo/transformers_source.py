"""Hugging Face transformers models named in a card by configuration, with no wrapper module.

Safe by construction: the options are allow-listed, the architecture is one of
:data:`ARCHITECTURES`, configuration values are plain numbers, strings and booleans, and weights
load only from local ``.safetensors`` files (a file, or a ``from_pretrained`` directory read with
``local_files_only=True``, ``use_safetensors=True`` and ``trust_remote_code=False``). Nothing
downloads and no pickle is ever read.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hkt_core import Adapter
from hkt_core import ConfigError

#: The transformers classes a card may name (classification heads: one prediction per input).
ARCHITECTURES = (
    "BertForSequenceClassification", "DistilBertForSequenceClassification",
    "RobertaForSequenceClassification", "XLMRobertaForSequenceClassification", "AlbertForSequenceClassification",
    "ElectraForSequenceClassification", "DebertaV2ForSequenceClassification", "ModernBertForSequenceClassification",
    "GPT2ForSequenceClassification", "LlamaForSequenceClassification", "MistralForSequenceClassification",
    "Qwen2ForSequenceClassification",
    "T5ForSequenceClassification", "MT5ForSequenceClassification", "BartForSequenceClassification",
    "ViTForImageClassification", "DeiTForImageClassification", "SwinForImageClassification",
    "ResNetForImageClassification", "ConvNextForImageClassification", "RegNetForImageClassification",
    "EfficientNetForImageClassification",
)
#: The causal language models a card may name: the prediction is the per-token logits (B, T, vocab)
#: (task ``causal-lm``). GPT-2's causal LM is ``GPT2LMHeadModel``.
CAUSAL_LM_ARCHITECTURES = (
    "GPT2LMHeadModel", "GPTNeoXForCausalLM", "OPTForCausalLM", "LlamaForCausalLM",
    "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM",
    "PhiForCausalLM", "Phi3ForCausalLM", "StableLmForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM",
    "SmolLM3ForCausalLM",
)
#: A tiny model the registry's contract checks build (nothing downloads).
CONTRACT_OPTIONS = {"architecture": "BertForSequenceClassification",
                    "config": {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
                               "num_attention_heads": 2, "intermediate_size": 32,
                               "max_position_embeddings": 32, "num_labels": 3}}
#: The options of the ``transformers`` model source.
OPTIONS = ("architecture", "config", "pretrained", "weights", "init_from_parent")
#: The options that name local files or folders (a card's relative paths resolve against its folder).
PATH_OPTIONS = ("pretrained", "weights", "init_from_parent")
#: A configuration's layer count, by the names configurations give it.
LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
#: Fields of a saved config.json that are not configuration (left out of a proposed child's config).
_META_FIELDS = ("architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "id2label",
                "label2id", "_name_or_path", "auto_map", "trust_remote_code", "_attn_implementation_autoset",
                "use_cache", "output_hidden_states", "output_attentions", "return_dict", "problem_type")
#: What hkt feeds a text model, positionally and in this order: a data set's input tensors (a mapping
#: sample's keys are put in this order by ``hkt_core.data.INPUT_ORDER``). A model whose ``forward``
#: takes other parameters between them (GPT-2's ``cache`` after ``input_ids``) binds them by name.
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@cache
def positional_class(cls: type) -> type:
    """``cls``, or a subclass of the same name whose ``forward`` takes :data:`TEXT_INPUTS` as its
    first positional parameters (those ``cls.forward`` accepts), passing them on by name. Modules,
    parameters and state-dict keys are ``cls``'s own; only the order of the inputs differs."""
    params = list(inspect.signature(cls.forward).parameters)[1:]
    taken = tuple(name for name in TEXT_INPUTS if name in params)
    if tuple(params[:len(taken)]) == taken:
        return cls

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if len(inputs) > len(taken):
            raise TypeError(f"{cls.__name__} takes at most {len(taken)} positional inputs ({', '.join(taken)}), "
                            f"got {len(inputs)}")
        named = {k: v for k, v in zip(taken, inputs)}
        return cls.forward(self, **named, **kwargs)

    forward.__signature__ = inspect.Signature(   # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in taken]
        + [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
    forward.__doc__ = cls.forward.__doc__
    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__, "hkt_text_inputs": taken})


def _fail(message: str) -> None:
    raise ConfigError(f"model 'transformers': {message}")


def _config_fields(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        _fail(f"config must be a table of configuration fields, got {type(config).__name__}")
    for key, value in config.items():
        plain = isinstance(value, (bool, int, float, str)) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value))
        if not plain:
            _fail(f"config field {key!r} must be a number, string, boolean or a list of them, "
                  f"got {type(value).__name__}")
        if key in ("trust_remote_code", "auto_map"):
            _fail(f"config field {key!r} is not allowed (remote code never runs)")
    return dict(config)


def _local_safetensors(path: Any, what: str) -> Path:
    p = Path(str(path)).expanduser()
    if not p.exists():
        _fail(f"{what} {str(path)!r} does not exist (weights load only from local files)")
    return p


@contextmanager
def _no_loading_bars():
    """transformers' progress bars off while a model loads from a local folder (a bar per load on
    every hkt command that builds the model), back as they were afterwards."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    if shown:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def transformers_model(architecture: str = "", config: Mapping[str, Any] | None = None,
                       pretrained: str | None = None, weights: str | None = None,
                       init_from_parent: str | None = None, **others: Any) -> nn.Module:
    """A transformers model of ``architecture`` from ``config`` (or a local ``pretrained`` directory),
    with ``weights`` from a local safetensors file when given; ``use_cache`` is off (training).
    ``init_from_parent``: a local ``pretrained`` folder of a deeper model of the same family whose
    layers start this one (:func:`init_from_layers`)."""
    if others:
        _fail(f"unknown option(s) {', '.join(sorted(others))}; allowed: {', '.join(OPTIONS)}")
    if architecture not in ARCHITECTURES and architecture not in CAUSAL_LM_ARCHITECTURES:
        _fail(f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES + CAUSAL_LM_ARCHITECTURES)}")
    import transformers

    cls = getattr(transformers, architecture, None)
    if cls is None:
        _fail(f"architecture {architecture!r} is not in the installed transformers {transformers.__version__}; "
              f"upgrade transformers or pick another")
    fields = _config_fields(config or {})
    if pretrained is not None:
        model = _read_pretrained(cls, pretrained, "pretrained", **fields)
    else:
        model = cls(cls.config_class(**fields))
    if weights is not None:
        file = _local_safetensors(weights, "weights file")
        if file.suffix != ".safetensors":
            _fail(f"weights must be a .safetensors file, got {file.name!r} (pickled checkpoints are never read)")
        from safetensors.torch import load_file

        missing, unexpected = model.load_state_dict(load_file(str(file)), strict=False)
        if missing or unexpected:
            _fail(f"weights {file.name!r} do not fit {architecture}: missing {list(missing)[:3]}, "
                  f"unexpected {list(unexpected)[:3]}")
    if init_from_parent is not None:
        if weights is not None or pretrained is not None:
            _fail("init_from_parent starts a model built from config; it cannot be combined with pretrained or weights")
        init_from_layers(model, _read_pretrained(cls, init_from_parent, "init_from_parent"))
    if getattr(model, "main_input_name", None) == "input_ids":
        model.__class__ = positional_class(cls)   # token ids, then the mask, positionally (GPT-2 included)
    for module in model.modules():   # an encoder-decoder's stacks hold copies of the configuration
        if hasattr(getattr(module, "config", None), "use_cache"):
            module.config.use_cache = False
    if weights is not None or pretrained is not None:   # a parent with weights is used as it is
        model.hkt_pretrained = str(Path(str(weights if weights is not None else pretrained)).expanduser().resolve())
    return model


def _read_pretrained(cls: type, folder: Any, what: str, **fields: Any) -> nn.Module:
    directory = _local_safetensors(folder, f"{what} directory")
    if not directory.is_dir() or not any(directory.glob("*.safetensors")):
        _fail(f"{what} {str(folder)!r} must be a local directory holding .safetensors weights")
    with _no_loading_bars():
        return cls.from_pretrained(directory, local_files_only=True, use_safetensors=True,
                                   trust_remote_code=False, **fields)


def _layer_list(model: nn.Module) -> tuple[str, nn.ModuleList] | tuple[None, None]:
    """The model's stack of layers: the first ``nn.ModuleList`` as long as its configured depth."""
    depth = next((getattr(model.config, f) for f in LAYER_FIELDS if isinstance(getattr(model.config, f, None), int)),
                 None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return name, module
    return None, None


def init_from_layers(child: nn.Module, parent: nn.Module) -> list[int]:
    """Start ``child`` from ``parent``'s weights, DistilBERT's way: every tensor outside the stack of
    layers that has the same name and shape (embeddings, pooler, head), and child layer ``j`` from
    parent layer ``j * L_parent // L_child`` (one layer in two when the child is half as deep).
    Both must be of one model type and width; returns the parent layers taken."""
    if type(child.config).__name__ != type(parent.config).__name__:
        _fail(f"init_from_parent: the parent is a {parent.config.model_type} model and the child a "
              f"{child.config.model_type} one; layers are copied between models of one type only")
    cname, clayers = _layer_list(child)
    pname, players = _layer_list(parent)
    if clayers is None or players is None or cname != pname:
        _fail(f"init_from_parent: no stack of layers found in both models ({cname!r}, {pname!r})")
    if len(clayers) > len(players):
        _fail(f"init_from_parent: the child has {len(clayers)} layers, the parent only {len(players)}")
    taken = [j * len(players) // len(clayers) for j in range(len(clayers))]
    source = parent.state_dict()
    state = child.state_dict()
    prefix = f"{cname}."
    copied = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            origin = f"{prefix}{taken[int(index)]}.{rest}"
        else:
            origin = key
        found = source.get(origin)
        if found is None:
            if key.startswith(prefix):
                _fail(f"init_from_parent: the parent has no {origin!r} for the child's {key!r}")
            continue
        if tuple(found.shape) != tuple(value.shape):
            if key.startswith(prefix) or "embeddings" in key:
                _fail(f"init_from_parent: {key} is {list(value.shape)} in the child but {origin} "
                      f"{list(found.shape)} in the parent; layers are copied where the widths match (give the child "
                      f"the parent's hidden_size, intermediate_size and heads, or leave init_from_parent out)")
            continue   # a head of another size keeps its own initialisation
        copied[key] = found
    child.load_state_dict(copied, strict=False)
    return taken


def read_saved_config(folder: Any) -> dict[str, Any]:
    """The ``config.json`` of a local ``save_pretrained`` folder (nothing downloads)."""
    path = _local_safetensors(folder, "pretrained directory") / "config.json"
    if not path.is_file():
        _fail(f"pretrained {str(folder)!r} holds no config.json (a save_pretrained folder has one)")
    import json

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"{path} could not be read as JSON ({exc})")
    if not isinstance(config, dict):
        _fail(f"{path} is not a JSON object")
    return config


def propose_options(given: dict[str, Any], *, role: str, parent: tuple[str, dict[str, Any]] | None = None,
                    info: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """``hkt pairs new``: complete a model's options from a local pretrained folder.

    The parent (``pretrained`` given): its ``architecture`` from the folder's ``config.json``. The
    child of a transformers parent with a pretrained folder (no options given): the parent's
    architecture and configuration (vocabulary and label count included) with half the layers and
    the same widths, so that ``init_from_parent`` starts it from every other parent layer, as
    DistilBERT does. The user edits the card to make it narrower (and drops ``init_from_parent``)."""
    options = dict(given)
    if role == "parent" or (role == "child" and "pretrained" in options):
        if "pretrained" not in options or "architecture" in options:
            return options, ""
        config = read_saved_config(options["pretrained"])
        found = [a for a in config.get("architectures") or [] if a in ARCHITECTURES + CAUSAL_LM_ARCHITECTURES]
        if not found:
            _fail(f"{options['pretrained']}/config.json names the architecture(s) {config.get('architectures')}, "
                  f"none of {', '.join(ARCHITECTURES + CAUSAL_LM_ARCHITECTURES)}; set architecture yourself")
        return {"architecture": found[0], **options}, f"architecture from {options['pretrained']}/config.json"
    if role != "child" or options or parent is None or parent[0] != "transformers":
        return options, ""
    folder = parent[1].get("pretrained")
    if folder is None:
        return options, ""
    saved = read_saved_config(folder)
    fields: dict[str, Any] = {}
    for key, value in saved.items():
        if key in _META_FIELDS or key.startswith("_"):
            continue
        plain = isinstance(value, (bool, int, float, str)) or (
            isinstance(value, list) and value and all(isinstance(v, (bool, int, float, str)) for v in value))
        if plain:
            fields[key] = value
    if isinstance(saved.get("id2label"), dict):
        fields["num_labels"] = len(saved["id2label"])
    layer_field = next((f for f in LAYER_FIELDS if isinstance(fields.get(f), int)), None)
    depth = fields.get(layer_field) if layer_field else None
    note = ""
    if layer_field and depth:
        fields[layer_field] = max(1, depth // 2)
        note = (f"the parent's configuration ({depth} layers) with {fields[layer_field]}: same vocabulary "
                f"({fields.get('vocab_size')}), labels ({fields.get('num_labels')}) and widths, so "
                f"init_from_parent copies one parent layer in {depth // fields[layer_field]} (DistilBERT's start); "
                f"make it narrower (hidden_size, intermediate_size) and drop init_from_parent for a smaller child")
    architecture = parent[1].get("architecture") or (saved.get("architectures") or [None])[0]
    out = {"architecture": architecture, "config": fields}
    if layer_field and depth:
        out["init_from_parent"] = folder
    return out, note


transformers_model.path_options = PATH_OPTIONS   # type: ignore[attr-defined]
transformers_model.propose_options = propose_options   # type: ignore[attr-defined]


class TransformersAdapter(Adapter):
    """transformers models: ``logits`` is the prediction; text models read integer token ids
    (and an attention mask as their second input); an encoder-decoder's example rows end with its
    end-of-sequence token."""

    def handles(self, model: nn.Module) -> bool:
        try:
            from transformers import PreTrainedModel
        except ImportError:
            return False
        return isinstance(model, PreTrainedModel)

    def example_inputs(self, model: nn.Module, shapes: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        if getattr(model, "main_input_name", None) != "input_ids":
            return super().example_inputs(model, shapes)
        gen = torch.Generator().manual_seed(0)
        vocab = int(getattr(model.config, "vocab_size", 2))
        ids = torch.randint(1, max(vocab, 2), tuple(shapes[0]), generator=gen)
        eos = getattr(model.config, "eos_token_id", None)
        if getattr(model.config, "is_encoder_decoder", False) and isinstance(eos, int) and ids.dim() == 2 and vocab > 2:
            # An encoder-decoder classifier (T5, BART) reads the end-of-sequence token of each row,
            # and every row must hold as many: one, at the end.
            ids = torch.where(ids == eos, (eos + 1) % vocab or 1, ids)
            ids[:, -1] = eos
        inputs = [ids] + [torch.ones(tuple(shape), dtype=torch.long) for shape in shapes[1:]]
        return tuple(inputs)

    def prediction(self, output: Any) -> torch.Tensor:
        logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits
        return super().prediction(output)


__all__ = ["ARCHITECTURES", "CAUSAL_LM_ARCHITECTURES", "CONTRACT_OPTIONS", "LAYER_FIELDS", "OPTIONS", "PATH_OPTIONS",
           "TEXT_INPUTS", "TransformersAdapter", "init_from_layers", "positional_class", "propose_options",
           "read_saved_config", "transformers_model"]
