"""``hkt export RUN --format torchvision`` and ``--format timm``: the child in its library's own terms.

Each writes a folder (by default ``RUN/export/child-torchvision`` or ``RUN/export/child-timm``):

- ``model.safetensors``: the child's state dict, its keys the library model's own;
- ``hkt_export.json``: the architecture, ``num_classes``, the other constructor options, the line that
  loads the folder, the run, the pair, the method and the difference measured;
- for ``timm`` also ``config.json`` (timm's own, written by ``timm.models.save_for_hf`` where
  ``huggingface_hub`` is installed), so that ``timm.create_model("local-dir:FOLDER", pretrained=True)``
  loads it too; the export checks that loading as well.

Loading, with nothing downloaded::

    model = torchvision.models.get_model(arch, weights=None, num_classes=N, **options)
    model.load_state_dict(safetensors.torch.load_file("FOLDER/model.safetensors"))

    model = timm.create_model(arch, pretrained=True, num_classes=N, **options,
                              pretrained_cfg_overlay=dict(file="FOLDER/model.safetensors", num_classes=N))

(timm drops the classifier of a file whose ``num_classes`` differs from the architecture's default
of 1000 unless the overlay states it.) The export proves this before the folder takes its name, as
``hf`` does: the folder is written under a temporary name beside the target, loaded back from
there by exactly these lines, and its output on example inputs must equal the child's within
``atol`` (it is 0) before it is renamed into place. A folder at the target name is replaced only
when it is an earlier export of hkt (it has ``hkt_export.json``) or is empty.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch

from hkt_core import HKTError, adapter_for, atomic_write_text, example_inputs_for

from .hf_export import MARKER, TMP_SUFFIX, _remove_orphans, _umask_permissions, replace_folder

WEIGHTS = "model.safetensors"
#: the constructor options a card may give beside ``name`` and ``num_classes`` (the source's own)
SOURCES = ("torchvision", "timm")


class VisionExportError(HKTError, RuntimeError):
    """The child cannot be exported in its library's format, or the folder does not reproduce it."""


def _fail(fmt: str, message: str) -> None:
    raise VisionExportError(f"export --format {fmt}: {message}")


def _check_target(fmt: str, run: Any, target: Path, default_name: str) -> None:
    run_dir = run.path.resolve()
    if target.is_symlink():
        _fail(fmt, f"--out {target} is a symbolic link; give a folder name that is not a link")
    resolved = target.resolve()
    if resolved == run_dir or run_dir.is_relative_to(resolved):
        _fail(fmt, f"--out {target} is the run folder or holds it; give a new folder name (the default is "
                   f"{run.path / 'export' / default_name})")
    if target.exists() and not target.is_dir():
        _fail(fmt, f"--out {target} is a file; {fmt} writes a folder: give a folder name, e.g. "
                   f"{target.parent / default_name}")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        _fail(fmt, f"--out {target} is a folder that is not an hkt export (it has no {MARKER}); give a new folder "
                   f"name or empty it first: hkt replaces only its own exports")


def constructor_options(options: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """``(architecture, num_classes, the other constructor options)`` from a card's model options."""
    rest = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()
            if k not in ("name", "num_classes", "weights") and v is not None}
    return str(options.get("name")), int(options.get("num_classes", 1000)), rest


def load_torchvision(folder: str | Path) -> torch.nn.Module:
    """The model of a ``torchvision`` export folder, as its ``hkt_export.json`` says to build it."""
    import torchvision
    from safetensors.torch import load_file

    record = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    model = torchvision.models.get_model(record["architecture"], weights=None, num_classes=record["num_classes"],
                                         **record["options"])
    model.load_state_dict(load_file(str(Path(folder) / WEIGHTS)))
    return model


def load_timm(folder: str | Path) -> torch.nn.Module:
    """The model of a ``timm`` export folder through ``pretrained_cfg_overlay`` (nothing downloads)."""
    import timm

    record = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    n = record["num_classes"]
    return timm.create_model(record["architecture"], pretrained=True, num_classes=n, **record["options"],
                             pretrained_cfg_overlay={"file": str(Path(folder) / WEIGHTS), "num_classes": n})


def _timm_config(child: torch.nn.Module, tmp: Path, options: dict[str, Any]) -> bool:
    """timm's own ``config.json`` (``local-dir:`` loading), written by ``timm.models.save_for_hf``
    (it needs ``huggingface_hub``); False where this timm cannot write it. The weights it writes
    are the same state dict, written again by the caller."""
    try:
        from timm.models import save_for_hf
    except ImportError:
        return False
    try:
        save_for_hf(child, str(tmp), model_args=dict(options) or None, safe_serialization=True)
    except Exception:   # no huggingface_hub, or model traits an architecture lacks: the overlay still loads
        (tmp / "config.json").unlink(missing_ok=True)
        return False
    return (tmp / "config.json").is_file()


_LOAD = {
    "torchvision": ("model = torchvision.models.get_model({arch!r}, weights=None, num_classes={n}{opts}); "
                    "model.load_state_dict(safetensors.torch.load_file('{folder}/model.safetensors'))"),
    "timm": ("model = timm.create_model({arch!r}, pretrained=True, num_classes={n}{opts}, "
             "pretrained_cfg_overlay=dict(file='{folder}/model.safetensors', num_classes={n}))"),
}


def _export(fmt: str, run: Any, out: str | Path | None, atol: float) -> tuple[Path, float]:
    try:
        __import__(fmt)
        from safetensors.torch import save_file
    except ImportError:
        _fail(fmt, f"it needs {fmt} and safetensors: pip install 'hkt-zoo[{fmt}]'")
    default_name = f"child-{fmt}"
    target = Path(out) if out is not None else run.path / "export" / default_name
    if out is None and (run.path / "export").is_symlink():
        _fail(fmt, f"{run.path / 'export'} is a symbolic link; a run folder's export folder must be a real folder: "
                   f"remove the link or give --out")
    _check_target(fmt, run, target, default_name)
    ref, options = run.network_ref()
    if ref != fmt:
        others = {"torchvision": "timm", "timm": "torchvision"}[fmt]
        _fail(fmt, f"it writes the zoo's {fmt} models; this run's network is {ref!r}: use --format safetensors, onnx "
                   f"or pt2{', or hf' if ref == 'transformers' else f', or {others}' if ref == others else ''}")
    architecture, num_classes, extra = constructor_options(dict(options))
    child = run.child()
    card = run.card_as_written
    inputs = example_inputs_for(child, [(3, *s[1:]) for s in card.input_shapes], card.input_dtypes, run.manager)
    adapter = adapter_for(child, run.manager)
    with torch.no_grad():
        expected = adapter.prediction(child(*inputs))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(fmt, f"cannot create the folder {target.parent} ({exc.strerror or exc})")
    _remove_orphans(target)
    tmp = target.parent / f".{target.name[:40]}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    try:
        tmp.mkdir()
        timm_config = _timm_config(child, tmp, extra) if fmt == "timm" else False
        save_file({k: v.detach().cpu().contiguous() for k, v in child.state_dict().items()}, str(tmp / WEIGHTS),
                  metadata={"format": "pt", "architecture": architecture, "library": fmt})
        record = {"format": fmt, "library": fmt, "architecture": architecture, "num_classes": num_classes,
                  "options": extra, "weights": WEIGHTS}
        atomic_write_text(tmp / MARKER, json.dumps(record, indent=2) + "\n")
        loaded = (load_torchvision if fmt == "torchvision" else load_timm)(tmp).eval()
        with torch.no_grad():
            got = adapter.prediction(loaded(*inputs))
        diff = float((got.float() - expected.float()).abs().max()) if got.shape == expected.shape else float("inf")
        if timm_config:   # timm's own folder loading too: create_model("local-dir:FOLDER", pretrained=True)
            import timm

            local = timm.create_model(f"local-dir:{tmp}", pretrained=True).eval()
            with torch.no_grad():
                again = adapter.prediction(local(*inputs))
            diff = max(diff, float((again.float() - expected.float()).abs().max())
                       if again.shape == expected.shape else float("inf"))
        if not diff <= atol:
            kept = "the previous export is kept" if target.exists() else "nothing was kept"
            _fail(fmt, f"the exported folder's output differs from the child's by {diff:.3g} (allowed {atol:g}); "
                       f"{kept}")
        opts = "".join(f", {k}={v!r}" for k, v in extra.items())
        record.update({"load": _LOAD[fmt].format(arch=architecture, n=num_classes, opts=opts, folder=str(target)),
                       "timm_local_dir": timm_config, "pair": run.pair, "method": run.method,
                       "run": run.config.get("run"), "max_difference": diff,
                       "version": __import__(fmt).__version__})
        atomic_write_text(tmp / MARKER, json.dumps(record, indent=2) + "\n")
        _umask_permissions(tmp)
        replace_folder(tmp, target)
    except OSError as exc:
        _fail(fmt, f"cannot write {target} ({exc.strerror or exc}); the previous export, if any, is kept")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target, diff


def export_torchvision(run: Any, out: str | Path | None = None, *, atol: float = 1e-4) -> tuple[Path, float]:
    """Write the run's best torchvision child as a folder that ``torchvision.models.get_model`` +
    ``load_state_dict`` loads (module docstring); returns the folder and the difference measured."""
    return _export("torchvision", run, out, atol)


def export_timm(run: Any, out: str | Path | None = None, *, atol: float = 1e-4) -> tuple[Path, float]:
    """Write the run's best timm child as a folder that ``timm.create_model(..., pretrained=True,
    pretrained_cfg_overlay=...)`` loads (module docstring); returns the folder and the difference."""
    return _export("timm", run, out, atol)


__all__ = ["VisionExportError", "WEIGHTS", "constructor_options", "export_timm", "export_torchvision", "load_timm",
           "load_torchvision"]
