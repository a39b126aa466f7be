"""torchvision and timm classifiers named in a card by their constructor, with no wrapper module.

Safe by construction, like the ``transformers`` source: the constructor is one of the library's
own model list (``torchvision.models.list_models`` of the classification models,
``timm.list_models()``), the options are allow-listed (:data:`TORCHVISION_OPTIONS`,
:data:`TIMM_OPTIONS`), their values are plain numbers (or lists of them), library weights are
never requested (torchvision's ``weights=None``, timm's ``pretrained=False``: nothing downloads),
and a card's ``weights`` load only from a local ``.safetensors`` file (all keys and shapes must
fit). A model built with weights is marked ``hkt_pretrained`` so that a parent is used as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from hkt_core import ConfigError

#: The options of the ``torchvision`` source: the constructor, the class count, a few width
#: options (only the constructors that take them accept them), local weights.
TORCHVISION_OPTIONS = ("name", "num_classes", "width_mult", "width_per_group", "dropout", "image_size",
                       "weights")
#: The options of the ``timm`` source (widths and depths of ViT/DeiT, ConvNeXt and ResNet families).
TIMM_OPTIONS = ("name", "num_classes", "embed_dim", "depth", "num_heads", "dims", "depths", "img_size",
                "patch_size", "drop_rate", "weights")
#: What the registry's contract checks build (nothing downloads).
TORCHVISION_CONTRACT = {"name": "resnet18", "num_classes": 10}
TIMM_CONTRACT = {"name": "resnet10t", "num_classes": 10}


def _fail(source: str, message: str) -> None:
    raise ConfigError(f"model {source!r}: {message}")


def _checked(source: str, allowed: tuple[str, ...], name: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options the constructor receives (plain numbers or lists of them), checked before the
    library is imported."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        _fail(source, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    if not isinstance(name, str) or not name:
        _fail(source, f"name = {name!r} is invalid: a constructor of the library's model list, e.g. "
                      f"{TORCHVISION_CONTRACT['name'] if source == 'torchvision' else TIMM_CONTRACT['name']!r}")
    out = {}
    for key, value in options.items():
        if key == "weights" or value is None:
            continue
        plain = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, (list, tuple)) and value
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        if not plain:
            _fail(source, f"option {key} = {value!r} is invalid: a number or a list of numbers")
        out[key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def _weights_file(source: str, weights: Any) -> Path | None:
    if weights is None:
        return None
    file = Path(str(weights)).expanduser()
    if file.suffix != ".safetensors":
        _fail(source, f"weights must be a local .safetensors file, got {file.name!r} (pickled checkpoints are "
                      f"never read, library weights never download)")
    if not file.is_file():
        _fail(source, f"weights file {str(weights)!r} does not exist (weights load only from local files)")
    return file


def _load(source: str, model: nn.Module, file: Path | None, name: str) -> nn.Module:
    if file is None:
        return model
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(file)), strict=False)
    if missing or unexpected:
        _fail(source, f"weights {file.name!r} do not fit {name}: missing {list(missing)[:3]}, "
                      f"unexpected {list(unexpected)[:3]}")
    model.hkt_pretrained = str(file.resolve())
    return model


def torchvision_classifiers() -> list[str]:
    """The classification constructors of ``torchvision.models`` (the library's own list)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(name: str = "", num_classes: int = 1000, weights: str | None = None,
                      **options: Any) -> nn.Module:
    """A torchvision classifier ``name`` with ``num_classes`` outputs (random initialisation, or
    ``weights`` from a local safetensors file); width options pass to the constructor."""
    kwargs = _checked("torchvision", TORCHVISION_OPTIONS, name, {"num_classes": num_classes, **options})
    file = _weights_file("torchvision", weights)
    names = torchvision_classifiers()
    if name not in names:
        from hkt_core import closest

        _fail("torchvision", f"name {name!r} is not a torchvision classifier; closest: "
                             f"{', '.join(closest(name, names))} (torchvision.models.list_models() lists {len(names)})")
    import torchvision

    try:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    except TypeError as exc:
        _fail("torchvision", f"{name} does not take {sorted(set(kwargs) - {'num_classes'})}: {exc}")
    return _load("torchvision", model, file, name)


def timm_model(name: str = "", num_classes: int = 1000, weights: str | None = None, **options: Any) -> nn.Module:
    """A timm model ``name`` with ``num_classes`` outputs, ``pretrained=False`` (random initialisation,
    or ``weights`` from a local safetensors file); width options pass to the constructor."""
    kwargs = _checked("timm", TIMM_OPTIONS, name, {"num_classes": num_classes, **options})
    file = _weights_file("timm", weights)
    import timm

    names = timm.list_models()
    if name not in names:
        from hkt_core import closest

        _fail("timm", f"name {name!r} is not a timm model; closest: {', '.join(closest(name, names))} "
                      f"(timm.list_models() lists {len(names)})")
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as exc:
        _fail("timm", f"{name} does not take {sorted(set(kwargs) - {'num_classes'})}: {exc}")
    return _load("timm", model, file, name)


torchvision_model.path_options = ("weights",)   # type: ignore[attr-defined]  # resolved against a card's folder
timm_model.path_options = ("weights",)   # type: ignore[attr-defined]

__all__ = ["TIMM_CONTRACT", "TIMM_OPTIONS", "TORCHVISION_CONTRACT", "TORCHVISION_OPTIONS", "timm_model",
           "torchvision_classifiers", "torchvision_model"]
