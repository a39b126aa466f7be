"""Exporting a run's child alone: safetensors (default), ONNX or a torch.export ``.pt2`` program.

Every export is written to a temporary name beside its target, loaded back from there and run on
example inputs; its output must match the child's (exactly for safetensors, within ``atol`` for
ONNX and pt2, whose kernels may differ in the last bits) before it is renamed into place. A failed
or interrupted export leaves the previous export under the target name untouched, and the
temporary files a killed export left are removed by the next export to the same target.
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from pathlib import Path

import torch
from torch import nn

from ..adapters import adapter_for, example_inputs_for
from ..errors import HKTError
from ..io import TMP_SUFFIX, current_umask, storage_error
from .run import Run

FORMATS = ("safetensors", "onnx", "pt2")
SUFFIX = {"safetensors": ".safetensors", "onnx": ".onnx", "pt2": ".pt2"}


class ExportError(HKTError, RuntimeError):
    """An exported model could not be written, or its output differs from the child's."""


def _prediction(run: Run, model: nn.Module, inputs) -> torch.Tensor:
    return adapter_for(model, run.manager).prediction(model(*inputs))


def _example(run: Run, child: nn.Module, batch: int) -> tuple[torch.Tensor, ...]:
    shapes = [(batch, *s[1:]) for s in run.card.input_shapes]
    return example_inputs_for(child, shapes, run.card.input_dtypes, run.manager)


def export_formats(manager) -> tuple[str, ...]:
    """The formats ``hkt export`` writes: the core's, then those plugins register (``export_formats``)."""
    return (*FORMATS, *manager.registry("export_formats").names())


def export_run(run: Run, fmt: str, out: str | Path | None = None, *, atol: float = 1e-4) -> tuple[Path, float]:
    """Write the run's best child in ``fmt``; returns the file and the largest output difference."""
    if fmt not in FORMATS:
        plugin_formats = run.manager.registry("export_formats")
        if fmt in plugin_formats:  # a plugin's format (hkt list export_formats) writes and checks its own target
            return plugin_formats.get(fmt)(run, out, atol=atol)
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(export_formats(run.manager))}")
    path = Path(out) if out is not None else run.path / "export" / f"child{SUFFIX[fmt]}"
    if out is None and (run.path / "export").is_symlink():
        raise ExportError(f"{run.path / 'export'} is a symbolic link (to {os.readlink(run.path / 'export')}); a run "
                          f"folder's export folder must be a real folder: remove the link or give --out")
    check_target(run, path, fmt)
    child = run.child()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"--out {path}: cannot create its folder {path.parent} ({exc.strerror or exc})") from None
    with torch.no_grad():
        check_inputs = _example(run, child, 3)
        expected = _prediction(run, child, check_inputs)
    _remove_orphans(path)
    tmp = path.with_name(f".{path.name[:40]}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        write = {"safetensors": _safetensors, "onnx": _onnx, "pt2": _pt2}[fmt]
        diff = write(run, child, tmp, check_inputs, expected)
        if not diff <= (0.0 if fmt == "safetensors" else atol):
            kept = "the previous export is kept" if path.exists() else "nothing was kept"
            raise ExportError(f"the exported {fmt} model's output differs from the child's by {diff:.3g} "
                              f"(allowed {atol:g}); {kept}")
        try:
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, path)  # verified: only now under the target name
        except OSError as exc:
            raise storage_error(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path, diff


def _remove_orphans(path: Path) -> None:
    """Temporaries of ``path`` that an export killed before its rename left behind."""
    for orphan in path.parent.glob(f".{path.name[:40]}.*{TMP_SUFFIX}"):
        if orphan.is_file():
            orphan.unlink(missing_ok=True)


def check_target(run: Run, path: Path, fmt: str) -> None:
    """Refuse an export target that is a directory or one of the run's own files."""
    from .run import own_files

    try:
        is_dir, target = path.is_dir(), path.resolve()
    except OSError as exc:
        raise ExportError(f"--out {path}: {exc.strerror or exc}") from None
    if is_dir:
        raise ExportError(f"--out {path} is a directory; give a file name, e.g. {path / ('child' + SUFFIX[fmt])}")
    if target in {f.resolve() for f in own_files(run.path)}:
        raise ExportError(f"--out {path} is one of the run's own files; choose another name (the default is "
                          f"{run.path / 'export' / ('child' + SUFFIX[fmt])})")


def _safetensors(run, child, path, inputs, expected) -> float:
    from .checkpoint import write_tensors

    ref, options = run.network_ref()
    write_tensors(path, child.state_dict(), kind="export",
                  metadata={"model": ref, "model_options": json.dumps(options), "pair": run.pair,
                            "method": run.method})
    fresh = run.network_from_file(path)
    with torch.no_grad():
        got = _prediction(run, fresh.eval(), inputs)
    return float((got - expected).abs().max())


def _onnx(run, child, path, inputs, expected) -> float:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("ONNX export needs the optional extra: pip install 'hkt[onnx]'") from None

    names = [f"input{i}" for i in range(len(inputs))]

    class _Prediction(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model
            self.adapter = adapter_for(model, run.manager)

        def forward(self, *xs):
            return self.adapter.prediction(self.model(*xs))

    wrapper = _Prediction(child).eval()
    example = _example(run, child, 2)

    def write(tmp: Path) -> None:
        # The TorchScript-based exporter first: about ten times faster than the torch.export-based
        # one for these models; the latter is used where the former fails or no longer exists.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(wrapper, example, str(tmp), input_names=names, output_names=["prediction"],
                                  dynamic_axes={n: {0: "batch"} for n in [*names, "prediction"]}, dynamo=False)
        except Exception:
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(wrapper, example, str(tmp), input_names=names, output_names=["prediction"],
                              dynamic_shapes=tuple({0: batch} for _ in example), dynamo=True)

    try:
        write(path)
    except Exception as exc:  # the exporter's own errors are long; keep the cause
        raise ExportError(f"ONNX export of {type(child).__name__} failed: {type(exc).__name__}: {exc}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
    return float((torch.from_numpy(got) - expected).abs().max())


def _pt2(run, child, path, inputs, expected) -> float:
    example = _example(run, child, 2)
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(child.eval(), example,
                                      dynamic_shapes=tuple({0: batch} for _ in example))
    except Exception as exc:
        raise ExportError(f"torch.export of {type(child).__name__} failed: {type(exc).__name__}: {exc}") from None
    try:
        with open(path, "wb") as file:   # a file object: torch warns about a name without .pt2 (the temporary's)
            torch.export.save(program, file)
    except OSError as exc:
        raise storage_error(path, exc) from None
    with open(path, "rb") as file:
        loaded = torch.export.load(file).module()
    with torch.no_grad():
        got = adapter_for(child, run.manager).prediction(loaded(*inputs))
    return float((got - expected).abs().max())
