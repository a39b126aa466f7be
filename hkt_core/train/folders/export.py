"""Exporting a run's child alone: safetensors (default), ONNX or a torch.export ``.pt2`` program.

Every export is written to a temporary name beside its target (:func:`hkt_core.io.atomic_write`),
loaded back from there and run on example inputs; its output must match the child's (exactly for
safetensors, within ``atol`` for ONNX and pt2, whose kernels may differ in the last bits) before it
is renamed into place. A failed or interrupted export leaves the previous export under the target
name untouched, a failed write (a full disk) is one line saying so, and the temporary files a killed
export left, at any nesting, are removed by the next export to the same target. The default target
``RUN/export/`` must be a real folder inside the run folder.
"""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ...adapters import adapter_for, example_inputs_for
from ...errors import HKTError, UnsafePathError
from ...io import StorageError, atomic_write, check_inside, remove_orphaned_temporaries, storage_error
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
    within = run.path if out is None else None  # the default target stays inside the run folder
    if within is not None:
        try:
            check_inside(within, path)
        except UnsafePathError as exc:
            raise UnsafePathError(f"{exc}, or give --out") from None
    check_target(run, path, fmt)
    child = run.child()
    again = (f"hkt export {run.path}{'' if fmt == 'safetensors' else f' --format {fmt}'}"
             f"{'' if out is None else f' --out {out}'}")

    def failed(exc: OSError, what: str) -> StorageError:
        try:
            kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        except OSError:
            kept = f"no {path.name} was written"
        return StorageError(exc.errno, f"{what}; {kept} and the run folder {run.path} is unchanged; export again "
                                       f"once the cause is fixed: {again}")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise failed(exc, f"cannot create the folder {path.parent}: {exc.strerror or exc}") from None
    with torch.no_grad():
        check_inputs = _example(run, child, 3)
        expected = _prediction(run, child, check_inputs)
    remove_orphaned_temporaries(path.parent, of=path.name)
    writer = {"safetensors": _safetensors, "onnx": _onnx, "pt2": _pt2}[fmt]
    measured: list[float] = []

    def write_and_check(tmp: Path) -> None:
        diff = writer(run, child, tmp, check_inputs, expected)
        if not diff <= (0.0 if fmt == "safetensors" else atol):
            kept = "the previous export is kept" if path.exists() else "nothing was kept"
            raise ExportError(f"the exported {fmt} model's output differs from the child's by {diff:.3g} "
                              f"(allowed {atol:g}); {kept}")
        measured.append(diff)

    try:
        atomic_write(path, write_and_check, within=within)  # verified: only then under the target name
    except StorageError as exc:
        raise failed(exc, str(exc)) from None
    return path, measured[0]


def check_target(run: Run, path: Path, fmt: str) -> None:
    """Refuse an export target that is a directory or one of the run's own files."""
    from .files import own_files

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
    from .checkpoint import save_tensors

    ref, options = run.network_ref()
    save_tensors(path, child.state_dict(), kind="export",
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
    except OSError:
        raise  # a failed write: one line naming the file (hkt_core.io)
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
    except RuntimeError as exc:  # torch's file writer reports a failed write (a full disk) this way
        cause = " ".join(str(exc).split())[:160]
        raise storage_error(path, OSError(errno.EIO, f"torch.export.save failed ({cause})")) from None
    with open(path, "rb") as file:
        loaded = torch.export.load(file).module()
    with torch.no_grad():
        got = adapter_for(child, run.manager).prediction(loaded(*inputs))
    return float((got - expected).abs().max())
