"""The CUDA paths, checked on a GPU: training, determinism, NCCL and the step benchmark.

    python benchmarks/gpu_check.py            # on a machine with CUDA: about 4 minutes on one GPU
    python benchmarks/gpu_check.py --render   # docs/performance.md's GPU section from docs/results/gpu.json
    python benchmarks/gpu_check.py --quick    # smaller, into a temporary folder (on CPU-only machines: the no-CUDA exit)

On a machine without CUDA it says so and exits 0: nothing is written. With CUDA, in order, each
stage's results written to ``docs/results/gpu.json`` as soon as it finishes (a machine taken back
mid-way still leaves what was measured):

1. **training**: the shipped pair ``mnist1d-resnet56-resnet20`` (small data, 2 epochs): its
   parent once, then HKT with ``device="cuda"`` in fp32, in bf16 and compiled, each twice with the
   same seed; the two runs' weights digests (SHA-256 of ``child.safetensors``) must agree;
2. **NCCL**: a single-process ``nccl`` process group and one DDP step (an all-reduce of the
   gradients through NCCL);
3. **steps**: :mod:`benchmarks.step`'s variants on CUDA (ResNet-110 -> ResNet-20, batch 64): GPU
   time per step (CUDA events), the host's CPU time per step, peak allocated memory, and the
   ratios 2HKT/KD, 3HKT/KD and framework/hand-written; the lockstep interpreter's per-node host
   work on CUDA tensors.

Then docs/performance.md's section between its ``gpu-table`` markers is regenerated from the JSON.
The machine may carry a torch of its own and no network: install the project's pure-Python
dependencies from wheels built beforehand (``pip wheel -w wheels .`` on a connected machine).
Exit status 1 when a digest check or the NCCL smoke failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GPU_JSON = ROOT / "docs" / "results" / "gpu.json"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- gpu-table:begin -->", "<!-- gpu-table:end -->"
PAIR = "mnist1d-resnet56-resnet20"


def no_cuda_reason() -> str | None:
    """Why the CUDA paths cannot run here, or None when they can."""
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none (a CPU-only build)"
        return f"no CUDA device (torch {torch.__version__}, CUDA build {build})"
    return None


def _digest(path: Path) -> str:
    """SHA-256 of the weights themselves (names, dtypes, shapes and bytes; the file's metadata left out)."""
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def _save(results: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


# -- 1. training -------------------------------------------------------------------------------
def training(work: Path, epochs: int, samples: int, device: str = "cuda") -> dict[str, Any]:
    """The parent once, then fp32 / bf16 / compiled HKT runs, each twice: the weights must match."""
    import hkt_core

    small = ["dataset.num_samples=1200", "dataset.train_split=0.5"]
    started = time.perf_counter()
    parent = hkt_core.train(PAIR, "parent", out=work / "parent", device=device, epochs=epochs, progress=False,
                            train_samples=samples, settings=small)
    weights = parent.path / "child.safetensors"
    rows = []
    runs = (("fp32", {}), ("bf16", {"precision": "bf16"}), ("fp32 compiled", {"compile": True}))
    for label, options in runs[:2] if device == "cpu" else runs:
        digests, seconds = [], []
        for attempt in range(2):
            t0 = time.perf_counter()
            run = hkt_core.train(PAIR, "hkt", out=work / f"hkt-{label.replace(' ', '-')}-{attempt}", device=device,
                                 epochs=epochs, seed=0, progress=False, parent_weights=weights,
                                 train_samples=samples, settings=small, **options)
            seconds.append(time.perf_counter() - t0)
            digests.append(_digest(run.path / "child.safetensors"))
        rows.append({"run": label, "digests": digests, "same_weights": digests[0] == digests[1],
                     "seconds": seconds})
    return {"pair": PAIR, "epochs": epochs, "train_samples": samples, "rows": rows,
            "seconds": time.perf_counter() - started}


# -- 2. NCCL -----------------------------------------------------------------------------------
def nccl_smoke() -> dict[str, Any]:
    """One process, one GPU: an ``nccl`` group and a DDP step whose gradients NCCL all-reduces."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    try:
        dist.init_process_group("nccl", rank=0, world_size=1)
        model = DistributedDataParallel(torch.nn.Linear(8, 4).cuda(), device_ids=[0])
        x = torch.randn(16, 8, device="cuda")
        model(x).square().mean().backward()
        total = torch.ones(1, device="cuda")
        dist.all_reduce(total)
        ok = bool(total.item() == 1.0) and all(p.grad is not None for p in model.parameters())
        version = torch.cuda.nccl.version()
        version = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        return {"ok": ok, "backend": dist.get_backend(), "nccl": version}
    except Exception as exc:   # reported, not raised: the other stages still run
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# -- 3. steps ----------------------------------------------------------------------------------
def steps_on_cuda(batch: int, rounds: int, parent_name: str, node_repeats: int) -> dict[str, Any]:
    """benchmarks/step.py's variants on CUDA: GPU ms (events), host CPU ms and peak memory per step."""
    sys.path.insert(0, str(HERE))
    import step as bench

    torch.manual_seed(0)
    parent, child, manager = bench.pair(parent_name, "resnet20")
    parent, child = parent.cuda(), child.cuda()
    steps, keep = bench.make_steps(parent, child, manager, naive=False)
    trainable = list(child.parameters()) + [p for f in keep[:-1] for p in f.points.parameters()]
    optimiser = torch.optim.SGD(trainable, lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")
    gpu: dict[str, list[float]] = {name: [] for name in steps}
    host: dict[str, list[float]] = {name: [] for name in steps}
    peak: dict[str, int] = {}
    for r in range(rounds + 2):
        for name, fn in steps.items():
            child.train()
            optimiser.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            cpu = time.process_time()
            begin.record()
            fn(x, y).backward()
            optimiser.step()
            end.record()
            cpu = time.process_time() - cpu
            torch.cuda.synchronize()
            if r >= 2:
                gpu[name].append(begin.elapsed_time(end))
                host[name].append(1000 * cpu)
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated() - base)
    ms = {name: statistics.median(v) for name, v in gpu.items()}
    rows = [{"step": name, "gpu_ms": ms[name], "host_cpu_ms": statistics.median(host[name]),
             "vs_kd": ms[name] / ms["kd"], "vs_hand": ms[name] / ms["hand"], "peak_mb": peak[name] / 2**20}
            for name in steps]
    return {"parent": parent_name, "batch": batch, "rounds": rounds, "rows": rows,
            "per_node": bench.per_node_overhead(node_repeats, parent_name, device="cuda")}


# -- the doc section ----------------------------------------------------------------------------
def render(results: dict[str, Any] | None) -> str:
    """docs/performance.md's GPU section from ``docs/results/gpu.json`` (or the note that none ran)."""
    lines = [BEGIN, ""]
    if not results:
        lines += ["Not measured yet: no GPU was available where this was written. `benchmarks/gpu_check.py` is "
                  "ready to run on a machine with CUDA (about 4 minutes on one GPU); it writes "
                  "`docs/results/gpu.json` and regenerates this section from it.", "", END]
        return "\n".join(lines)
    s = results["set_up"]
    lines.append(f"{s['gpu']}, torch {s['torch']} (CUDA {s['cuda']}), measured by `python benchmarks/gpu_check.py`.")
    train = results.get("training")
    if train:
        lines += ["", f"Training `{train['pair']}` with `--device cuda` ({train['epochs']} epochs, "
                  f"{train['train_samples']} samples), each run twice with the same seed:", "",
                  "| run | same weights digest both times | seconds per run |", "|---|---|---:|"]
        for row in train["rows"]:
            lines.append(f"| {row['run']} | {'yes' if row['same_weights'] else 'NO'} | "
                         f"{statistics.fmean(row['seconds']):.0f} |")
    nccl = results.get("nccl")
    if nccl:
        lines += ["", "Single-process NCCL DDP step: " + ("passed" if nccl["ok"] else f"FAILED ({nccl.get('error')})")
                  + (f" (NCCL {nccl['nccl']})." if nccl.get("nccl") else ".")]
    st = results.get("steps")
    if st:
        lines += ["", f"Step cost on the GPU ({st['parent']} -> resnet20, batch {st['batch']}, {st['rounds']} rounds, "
                  f"medians; GPU time from CUDA events, host time the process's CPU time):", "",
                  "| step | GPU ms | x KD | x hand-written | host CPU ms | peak memory (MB) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for row in st["rows"]:
            lines.append(f"| {row['step']} | {row['gpu_ms']:.1f} | {row['vs_kd']:.2f} | {row['vs_hand']:.2f} | "
                         f"{row['host_cpu_ms']:.1f} | {row['peak_mb']:.0f} |")
        node = st["per_node"]
        lines += ["", f"Per-node host work on CUDA tensors ({node['nodes']} nodes): "
                  f"{node['before_us_per_node']:.2f} us per node with one `torch.no_grad()` per node, "
                  f"{node['after_us_per_node']:.2f} us with one region per run of nodes."]
    lines += ["", "Generated by `python benchmarks/gpu_check.py` from `docs/results/gpu.json`.", "", END]
    return "\n".join(lines)


def write_section(results: dict[str, Any] | None, doc: Path = PERFORMANCE_DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} section to fill")
    head, rest = text.split(BEGIN, 1)
    doc.write_text(head + render(results) + rest.split(END, 1)[1], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="regenerate the doc section from docs/results/gpu.json")
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch, 4 rounds, results and a copy of the doc under --out (a temporary folder)")
    parser.add_argument("--out", default=None, help="folder for gpu.json and the doc (default: docs/)")
    args = parser.parse_args(argv)
    if args.render:
        write_section(json.loads(GPU_JSON.read_text(encoding="utf-8")) if GPU_JSON.is_file() else None)
        return 0
    reason = no_cuda_reason()
    if reason:
        print(f"gpu_check: {reason}: nothing to check here; run it on a machine with a CUDA GPU", file=sys.stderr)
        return 0
    out = Path(args.out or (tempfile.mkdtemp(prefix="hkt-gpu-check-") if args.quick else GPU_JSON.parent))
    target, doc = out / GPU_JSON.name, PERFORMANCE_DOC
    if args.out or args.quick:
        out.mkdir(parents=True, exist_ok=True)
        doc = out / PERFORMANCE_DOC.name
        doc.write_text(PERFORMANCE_DOC.read_text(encoding="utf-8"), encoding="utf-8")
    results: dict[str, Any] = {"set_up": {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                          "cuda": torch.version.cuda, "quick": bool(args.quick)}}
    with tempfile.TemporaryDirectory(prefix="hkt-gpu-runs-") as work:
        results["training"] = training(Path(work), epochs=1 if args.quick else 2, samples=256 if args.quick else 512)
        _save(results, target)
        print(f"gpu_check: training {results['training']['rows']}", file=sys.stderr)
    results["nccl"] = nccl_smoke()
    _save(results, target)
    print(f"gpu_check: nccl {results['nccl']}", file=sys.stderr)
    results["steps"] = steps_on_cuda(batch=64, rounds=4 if args.quick else 15, parent_name="resnet110",
                                     node_repeats=10 if args.quick else 50)
    _save(results, target)
    write_section(results, doc)
    print(render(results))
    failed = not results["nccl"]["ok"] or not all(r["same_weights"] for r in results["training"]["rows"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
