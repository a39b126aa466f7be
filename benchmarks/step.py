"""Training-step cost of HKT against the baselines, measured in one run (not a timed test).

CIFAR ResNet-110 (parent) -> ResNet-20 (child), random 32x32 inputs, one SGD step per call:

- ``child``: the child alone with cross-entropy;
- ``kd``: Hinton KD (parent forward in eval mode under no_grad);
- ``naive``: HKT written the way the authors' public code does it: the child's forward run twice,
  the parent in train mode and not detached (its gradients are computed and thrown away), the
  sigmoid gate at the pooled features, three cross-entropies;
- ``hand``: 2HKT written by hand with the same math as the Family (GA at the pooled features,
  both directions, a1*MAE + a2*CE + a3*MAE, parent features under no_grad, child features shared);
- ``family-2hkt``: :class:`hkt_core.Family` mixing at the pooled features (the paper's CIFAR set-up);
- ``family-3hkt``: the Family with a second mixing point at ``layer2`` (spatial GA on 16x16 maps).

Variants run round-robin (one step of each per round) so machine load affects them alike. On a
shared machine wall time says more about the neighbours than about the code, so the ratios use
the process's CPU time per step (``time.process_time``, one intra-op thread by default); wall time
is shown beside it. The last column is the activation memory autograd saves for backward (the
part of peak memory that differs between the variants; CPU torch has no allocator peak counter).
Usage: ``python benchmarks/step.py --batches 64 128 --rounds 5``.

``--compiled`` measures instead the ``torch.compile``d step against the eager one for KD and
2HKT (the Family's lockstep step compiled as ``hkt train --compile`` does it), all four variants
round-robin in one process, writes ``docs/results/compile.json`` and regenerates the section of
docs/performance.md between its ``compile-ratio`` markers from it (``--render`` regenerates the
section from the committed JSON without measuring).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hkt_core import HKTConfig
from hkt_core.etm import genetic_attention
from hkt_core.etm.attention import attention_path
from hkt_core.family import Family
from hkt_core.lockstep.fold import folded_parent
from hkt_core.models import build_model
from hkt_core.plugins import default_manager


# -- models ---------------------------------------------------------------------------------------
def pair(parent_name: str = "resnet110", child_name: str = "resnet20", manager=None) -> tuple[nn.Module, nn.Module, object]:
    """The parent and child as ``hkt train`` builds them: registered model names looked up in the
    process's plugin manager (which holds hkt-vision's models and its CIFAR-ResNet adapter)."""
    manager = manager or default_manager()
    return build_model(parent_name, manager), build_model(child_name, manager), manager


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.pool(model.layer3(model.layer2(model.layer1(model.stem(x)))))


class FoldedStages(nn.Module):
    """The hand-written steps' frozen parent: each stage a BatchNorm-folded copy (hkt_core.lockstep.fold)."""

    def __init__(self, parent: nn.Module) -> None:
        super().__init__()
        for name in ("stem", "layer1", "layer2", "layer3", "pool", "fc"):
            setattr(self, name, folded_parent(getattr(parent, name)))

    def forward(self, x):
        return self.fc(features(self, x))


# -- steps ----------------------------------------------------------------------------------------
def mae(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.softmax(1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)).abs().mean()


class Task:
    loss = staticmethod(F.cross_entropy)
    inherit_loss = staticmethod(mae)


#: The Family variants: mixing points (parent = child names; the last pair is the predictions),
#: and whether the frozen-parent optimisations of this version run ("before": the unfolded parent
#: and Genetic Attention on transposed 3-D views, as every run before them computed).
FAMILIES = {
    "family-2hkt": (("pool", "fc"), True),
    "family-3hkt": (("layer2", "pool", "fc"), True),
    "family-3hkt-before": (("layer2", "pool", "fc"), False),
    "family-3hkt-layer1": (("layer1", "pool", "fc"), True),
    "family-3hkt-layer1-before": (("layer1", "pool", "fc"), False),
}
LAM, ALPHAS = 0.6, (0.25, 0.5, 0.25)


def make_steps(parent: nn.Module, child: nn.Module, manager, naive: bool = True) -> tuple[dict[str, Callable], list]:
    """Every variant's step ``(x, y) -> loss`` and the modules whose gradients a round clears."""
    lam, (a1, a2, a3) = LAM, ALPHAS
    parent.eval().requires_grad_(False)
    folded = FoldedStages(parent).eval()
    example = torch.randn(2, 3, 32, 32)
    families = {name: (Family(parent, child, [(n, n) for n in names], HKTConfig.preset("paper", lam=lam),
                              example_inputs=example,
                              task=Task(), manager=manager, fold_parent_bn=fast), fast)
                for name, (names, fast) in FAMILIES.items()}

    def child_step(x, y):
        return F.cross_entropy(child(x), y)

    def kd(teacher_net):
        def kd_step(x, y, t=4.0, w=0.9):
            with torch.no_grad():
                teacher = teacher_net(x)
            student = child(x)
            kl = F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean")
            return w * t * t * kl + (1 - w) * F.cross_entropy(student, y)
        return kd_step

    def gate(q, v):
        s = torch.sigmoid((q * v).sum(1, keepdim=True) / q.shape[1] ** 0.5)
        return q + lam * (1 - s) * (v - q)

    naive_parent = copy.deepcopy(parent).train().requires_grad_(True)

    def naive_step(x, y):
        fp = features(naive_parent, x)                 # train mode, autograd through the parent
        native = child(x)                              # first child forward
        fc = features(child, x)                        # second child forward
        inherited = child.fc(gate(fc, fp))
        head = naive_parent.fc(gate(fp, fc))
        return F.cross_entropy(native, y) + F.cross_entropy(inherited, y) + F.cross_entropy(head, y)

    def hand_step(x, y):
        with torch.no_grad():
            fp = features(folded, x)
        fc = features(child, x)
        native = child.fc(fc)
        inherited = child.fc(fc + lam * genetic_attention(fc, fp))
        head = folded.fc(fp + lam * genetic_attention(fp, fc))
        return a1 * mae(inherited, y) + a2 * F.cross_entropy(native, y) + a3 * mae(head, y)

    def family_step(fam, fast):
        def step(x, y):
            with attention_path("fused" if fast and not _COUNTING_FLOPS else "legacy"):
                return fam.loss(fam(x), y)
        return step

    steps = {"child": child_step, "kd": kd(folded), "kd-unfolded": kd(parent)}
    if naive:
        steps["naive"] = naive_step
    steps["hand"] = hand_step
    steps.update({name: family_step(fam, fast) for name, (fam, fast) in families.items()})
    return steps, [fam for fam, _ in families.values()] + [naive_parent]


def saved_activation_bytes(step: Callable, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of distinct tensor storages autograd saves for backward during one step's forward."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step(x, y)
    loss.backward()
    return sum(seen.values())


_COUNTING_FLOPS = False


def step_flops(step: Callable, x: torch.Tensor, y: torch.Tensor) -> int:
    """Floating-point operations of one step (forward and backward) as torch's flop counter counts
    them (matrix products and convolutions). Genetic Attention is counted on its math path, whose
    FLOPs are the fused kernels' too (the counter does not know every fused CPU kernel)."""
    from torch.utils.flop_counter import FlopCounterMode

    global _COUNTING_FLOPS
    counter = FlopCounterMode(display=False)
    _COUNTING_FLOPS = True
    try:
        with counter, attention_path("legacy"):
            step(x, y).backward()
    finally:
        _COUNTING_FLOPS = False
    return counter.get_total_flops()


def run(batches: list[int], rounds: int, warmup: int, parent_name: str = "resnet110",
        child_name: str = "resnet20", naive: bool = True, size: int = 32) -> list[dict]:
    torch.manual_seed(0)
    parent, child, manager = pair(parent_name, child_name)
    print(f"{parent_name} {sum(p.numel() for p in parent.parameters()) / 1e6:.2f}M params -> {child_name} "
          f"{sum(p.numel() for p in child.parameters()) / 1e6:.2f}M; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    results = []
    for batch in batches:
        steps, keep = make_steps(parent, child, manager, naive=naive)
        trainable = list(child.parameters()) + [p for f in keep[:-1] for p in f.points.parameters()]
        optimiser = torch.optim.SGD(trainable, lr=0.01, momentum=0.9)
        x = torch.randn(batch, 3, size, size)
        y = torch.randint(0, 10, (batch,))
        times: dict[str, list[float]] = {name: [] for name in steps}
        walls: dict[str, list[float]] = {name: [] for name in steps}
        for r in range(warmup + rounds):
            for name, step in steps.items():
                child.train()
                optimiser.zero_grad(set_to_none=True)
                keep[-1].zero_grad(set_to_none=True)
                start, wall = time.process_time(), time.perf_counter()
                step(x, y).backward()
                optimiser.step()
                if r >= warmup:
                    times[name].append(time.process_time() - start)
                    walls[name].append(time.perf_counter() - wall)
        memory, flops = {}, {}
        for name, step in steps.items():
            optimiser.zero_grad(set_to_none=True)
            memory[name] = saved_activation_bytes(step, x, y)
            optimiser.zero_grad(set_to_none=True)
            flops[name] = step_flops(step, x, y)
        kd, hand = statistics.median(times["kd"]), statistics.median(times["hand"])
        for name in steps:
            med = statistics.median(times[name])
            results.append({"batch": batch, "step": name, "ms": 1000 * med,
                            "wall_ms": 1000 * statistics.median(walls[name]), "vs_kd": med / kd,
                            "vs_hand": med / hand, "saved_mb": memory[name] / 2**20,
                            "gflops": flops[name] / 1e9, "floor_vs_kd": flops[name] / flops["kd"]})
    return results


# -- per-node host work ---------------------------------------------------------------------------
def per_node_overhead(repeats: int, parent_name: str = "resnet110", device: str = "cpu") -> dict:
    """Host time the lockstep interpreter adds per node, before (one ``torch.no_grad()`` entered per
    node, as the interpreter did) and after (one region per run of nodes that need no autograd).

    The parent is traced to its individual layers (every convolution, BatchNorm and addition a
    node; only the parameter-free shortcut is kept whole) and run without autograd on one 8x8
    image, so the operations are cheap and the interpreter's own work shows; the same forward
    called eagerly is the reference."""
    from hkt_core.adapters import GenericAdapter
    from hkt_core.lockstep import LockstepGraph
    from hkt_core.lockstep.interpreter import release_plan

    parent, _, _ = pair(parent_name, "resnet20")
    parent.eval().requires_grad_(False).to(device)
    shortcut = next(type(m) for m in parent.modules() if type(m).__name__ == "PadShortcut")

    class LayerAdapter(GenericAdapter):
        leaf_modules = (shortcut,)

    graph = LockstepGraph(parent, LayerAdapter(), "parent")
    nodes = graph.sorted(graph.nodes)
    free = release_plan(nodes, set())
    x = torch.randn(1, 3, 8, 8, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def before():
        env: dict = {}
        graph.bind_inputs(env, (x,))
        for node in nodes:
            with torch.no_grad():
                env[node] = graph._execute(node, env.__getitem__, set())
            for dead in free.get(node, ()):
                env.pop(dead, None)

    def after():
        env: dict = {}
        graph.bind_inputs(env, (x,))
        graph.run(nodes, env, env.__getitem__, set(), free=free, grad=set())

    def eager():
        with torch.no_grad():
            parent(x)

    variants = {"eager": eager, "before": before, "after": after}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats + 3):
        for name, fn in variants.items():
            start = time.process_time()
            fn()
            sync()
            if r >= 3:
                times[name].append(time.process_time() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"parent": parent_name, "nodes": len(nodes), "input": [1, 3, 8, 8], "repeats": repeats, "device": device,
            "eager_us": 1e6 * med["eager"], "before_us": 1e6 * med["before"], "after_us": 1e6 * med["after"],
            "before_us_per_node": 1e6 * (med["before"] - med["eager"]) / len(nodes),
            "after_us_per_node": 1e6 * (med["after"] - med["eager"]) / len(nodes)}


def measure(batches: list[int], rounds: int, warmup: int, naive: bool = True, node_repeats: int = 50,
            parent_name: str = "resnet110", child_name: str = "resnet20", size: int = 32) -> dict:
    """Everything docs/performance.md's step section shows, as one JSON-ready record."""
    rows = run(batches, rounds, warmup, parent_name, child_name, naive, size)
    return {"set_up": {"parent": parent_name, "child": child_name, "models_from": "hkt_vision (hkt train's manager)",
                       "batches": batches, "rounds": rounds, "warmup": warmup, "image": size,
                       "threads": torch.get_num_threads(), "torch": torch.__version__, "device": "cpu",
                       "families": {name: {"points": list(names[:-1]), "optimised": fast}
                                    for name, (names, fast) in FAMILIES.items()}},
            "rows": rows, "per_node": per_node_overhead(node_repeats, parent_name)}


def table(results: list[dict]) -> str:
    lines = ["| batch | step | CPU ms (median) | x KD | floor x KD (FLOPs) | x hand-written | wall ms | "
             "saved activations (MB) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['batch']} | {r['step']} | {r['ms']:.0f} | {r['vs_kd']:.2f} | {r['floor_vs_kd']:.2f} "
                     f"| {r['vs_hand']:.2f} | {r['wall_ms']:.0f} | {r['saved_mb']:.1f} |")
    return "\n".join(lines)


STEP_BEGIN, STEP_END = "<!-- step-table:begin -->", "<!-- step-table:end -->"


def render_step_section(results: dict) -> str:
    """The docs/performance.md section generated from ``docs/results/step.json``."""
    s, node = results["set_up"], results["per_node"]
    rows = {(r["batch"], r["step"]): r for r in results["rows"]}
    points = "; ".join(f"`{name}` mixes at {', '.join(f'`{p}`' for p in f['points'])}"
                       + ("" if f["optimised"] else " with the unfolded parent and the 3-D attention views")
                       for name, f in s["families"].items())
    lines = [STEP_BEGIN, "",
             f"CIFAR {s['parent']} parent -> {s['child']} child, built as `hkt train` builds them "
             f"({s['models_from']}), random {s['image']}x{s['image']} inputs, one SGD step per measurement, every "
             f"variant round-robin in one process ({s['warmup']} warm-up round(s), {s['rounds']} measured, "
             f"medians of the process's CPU time), torch {s['torch']} on {s['device'].upper()}, {s['threads']} "
             f"intra-op thread(s). `kd` and `hand` run the BatchNorm-folded parent; {points}. "
             f"\"floor x KD\" is the step's FLOP count over KD's (forward and backward), the cost of its math "
             f"at KD's speed per FLOP.", "", table(results["rows"]), ""]
    for batch in s["batches"]:
        def get(name: str, batch: int = batch) -> dict | None:
            return rows.get((batch, name))

        before, after = get("family-3hkt-layer1-before"), get("family-3hkt-layer1")
        if before and after:
            lines.append(f"- Batch {batch}, `layer1` point: {before['vs_kd']:.2f}x KD before, {after['vs_kd']:.2f}x "
                         f"after; saved activations {before['saved_mb']:.1f} -> {after['saved_mb']:.1f} MB "
                         f"({100 * (1 - after['saved_mb'] / before['saved_mb']):.0f}% less).")
        before, after = get("family-3hkt-before"), get("family-3hkt")
        if before and after:
            lines.append(f"- Batch {batch}, `layer2` point: {before['vs_kd']:.2f}x KD before, {after['vs_kd']:.2f}x "
                         f"after; saved activations {before['saved_mb']:.1f} -> {after['saved_mb']:.1f} MB.")
        fold, plain = get("kd"), get("kd-unfolded")
        if fold and plain:
            lines.append(f"- Batch {batch}: KD with the folded parent takes {fold['ms'] / plain['ms']:.2f}x the "
                         f"CPU time of KD with the parent as trained.")
    lines += ["", f"Per-node host work of the lockstep interpreter ({node['parent']} traced to its "
              f"{node['nodes']} layer nodes, run without autograd on one {node['input'][2]}x{node['input'][3]} "
              f"image, {node['repeats']} repeats, medians): the eager forward takes {node['eager_us']:.0f} us, "
              f"the interpreter {node['before_us']:.0f} us with one `torch.no_grad()` per node "
              f"({node['before_us_per_node']:.2f} us per node over eager) and {node['after_us']:.0f} us with one "
              f"no-grad region per run of nodes ({node['after_us_per_node']:.2f} us per node over eager).", "",
              "Generated by `python benchmarks/step.py` from `docs/results/step.json`.", "", STEP_END]
    return "\n".join(lines)


# -- compiled vs eager ----------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
COMPILE_JSON = ROOT / "docs" / "results" / "compile.json"
STEP_JSON = ROOT / "docs" / "results" / "step.json"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- compile-ratio:begin -->", "<!-- compile-ratio:end -->"


def compiled_vs_eager(parent_name: str, batch: int, rounds: int, warmup: int) -> dict:
    """CPU ms per step of KD and 2HKT, eager and compiled, measured round-robin in this process."""
    from hkt_core.train.compiling import CompileReport, compile_family, compile_module

    torch.manual_seed(0)
    parent, child, manager = pair(parent_name, "resnet20")
    source = "hkt_vision (hkt train's manager)"
    parent.eval().requires_grad_(False)

    example = torch.randn(2, 3, 32, 32)
    report = CompileReport(say=lambda m: print(f"benchmark: {m}", file=sys.stderr))
    steps, compile_seconds, modules = {}, {}, []
    for compiled in (False, True):
        p, c = copy.deepcopy(parent), copy.deepcopy(child)
        torch.manual_seed(1)
        fam = Family(copy.deepcopy(parent), copy.deepcopy(child), [("pool", "pool"), ("fc", "fc")],
                     HKTConfig.preset("paper", lam=0.6), example_inputs=example, task=Task(), manager=manager)
        if compiled:
            compile_module(p, "parent", report)
            compile_module(c, "child", report)
            compile_family(fam, report)
        suffix = "compiled" if compiled else "eager"

        def kd_step(x, y, p=p, c=c, t=4.0, w=0.9):
            with torch.no_grad():
                teacher = p(x)
            student = c(x)
            kl = F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean")
            return w * t * t * kl + (1 - w) * F.cross_entropy(student, y)

        def hkt_step(x, y, fam=fam):
            return fam.loss(fam(x), y)

        for name, step, params in ((f"kd-{suffix}", kd_step, list(c.parameters())),
                                   (f"2hkt-{suffix}", hkt_step, fam.trainable_parameters())):
            steps[name] = (step, torch.optim.SGD(params, lr=0.01, momentum=0.9), c if "kd" in name else fam)
        modules += [p, c, fam]
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, (step, optimiser, module) in steps.items():
            module.train()
            optimiser.zero_grad(set_to_none=True)
            start, wall = time.process_time(), time.perf_counter()
            step(x, y).backward()
            optimiser.step()
            if r == 0:
                compile_seconds[name] = time.perf_counter() - wall
            elif r >= warmup:
                times[name].append(time.process_time() - start)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    return {
        "set_up": {"parent": parent_name, "child": "resnet20", "models_from": source, "batch": batch,
                   "rounds": rounds, "warmup": warmup, "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "device": "cpu", "backend": "inductor"},
        "compiled": report.compiled, "compile_fallbacks": report.fallbacks,
        "rows": [{"method": method, "eager_ms": ms[f"{method}-eager"], "compiled_ms": ms[f"{method}-compiled"],
                  "compiled_over_eager": ms[f"{method}-compiled"] / ms[f"{method}-eager"],
                  "first_step_seconds_compiled": compile_seconds[f"{method}-compiled"],
                  "first_step_seconds_eager": compile_seconds[f"{method}-eager"]} for method in ("kd", "2hkt")],
    }


def render_compile_section(results: dict) -> str:
    """The docs/performance.md section generated from ``docs/results/compile.json``."""
    s = results["set_up"]
    lines = [BEGIN, "",
             f"CIFAR {s['parent']} parent -> ResNet-20 child ({s['models_from']}), batch {s['batch']}, one SGD "
             f"step per measurement, the four variants round-robin in one process ({s['warmup']} warm-up round(s) "
             f"that include compiling, {s['rounds']} measured, medians of the process's CPU time), torch "
             f"{s['torch']} on {s['device'].upper()} with the {s['backend']} backend, {s['threads']} intra-op "
             f"thread(s). 2HKT mixes at the pooled features; its compiled variant is the Family's lockstep "
             f"step recorded as one graph and compiled, exactly as `hkt train --compile` does it. "
             f"Everything compiled without falling back: {'yes' if results['compiled'] else 'no'}.", "",
             "| method | eager CPU ms | compiled CPU ms | compiled / eager | first compiled step (s, wall) |",
             "|---|---:|---:|---:|---:|"]
    for row in results["rows"]:
        lines.append(f"| {row['method'].upper()} | {row['eager_ms']:.0f} | {row['compiled_ms']:.0f} | "
                     f"{row['compiled_over_eager']:.2f} | {row['first_step_seconds_compiled']:.0f} |")
    lines += ["", "Generated by `python benchmarks/step.py --compiled` from `docs/results/compile.json`.", "", END]
    return "\n".join(lines)


def write_section(doc: Path, begin: str, end: str, body: str) -> None:
    """Replace the part of ``doc`` between ``begin`` and ``end`` (markers included) with ``body``."""
    text = doc.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} has no {begin} ... {end} section to fill")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + body + tail, encoding="utf-8")


def write_compile_section(results: dict, doc: Path = PERFORMANCE_DOC) -> None:
    write_section(doc, BEGIN, END, render_compile_section(results))


def write_step_section(results: dict, doc: Path = PERFORMANCE_DOC) -> None:
    write_section(doc, STEP_BEGIN, STEP_END, render_step_section(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64])
    parser.add_argument("--rounds", type=int, default=15, help="measured steps per variant (default 15)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-naive", action="store_true", help="leave out the authors'-style step (the slowest)")
    parser.add_argument("--compiled", action="store_true",
                        help="compiled vs eager KD and 2HKT; writes docs/results/compile.json and docs/performance.md")
    parser.add_argument("--render", action="store_true",
                        help="regenerate docs/performance.md from step.json and compile.json only")
    parser.add_argument("--parent", choices=("resnet56", "resnet110"), default=None,
                        help="the parent (default resnet110; resnet56 for --compiled)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: tiny sizes, one round, results and a copy of the doc written under --out "
                             "(a temporary folder by default), nothing under docs/")
    parser.add_argument("--out", default=None, help="folder for the results JSON and the regenerated doc "
                                                    "(default: docs/results and docs/performance.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.render:
        write_step_section(json.loads(STEP_JSON.read_text(encoding="utf-8")))
        write_compile_section(json.loads(COMPILE_JSON.read_text(encoding="utf-8")))
        return 0
    if args.quick and args.out is None:
        import tempfile

        args.out = tempfile.mkdtemp(prefix="hkt-step-quick-")
    out = Path(args.out) if args.out else None
    doc = PERFORMANCE_DOC
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        doc = out / "performance.md"
        doc.write_text(PERFORMANCE_DOC.read_text(encoding="utf-8"), encoding="utf-8")
    if args.compiled:
        if args.quick:
            raise SystemExit("--compiled has no --quick mode (compiling takes minutes); run --quick alone")
        results = compiled_vs_eager(args.parent or "resnet56", args.batches[0], args.rounds, args.warmup)
        target = (out / "compile.json") if out else COMPILE_JSON
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        write_compile_section(results, doc)
        print(render_compile_section(results))
        return 0
    if args.quick:
        results = measure([2], 1, 0, naive=not args.no_naive, node_repeats=2,
                          parent_name=args.parent or "resnet20", size=16)
    else:
        results = measure(args.batches, args.rounds, args.warmup, naive=not args.no_naive,
                          parent_name=args.parent or "resnet110")
    target = (out / "step.json") if out else STEP_JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    write_step_section(results, doc)
    print(render_step_section(results))
    print(f"wrote {target} and {doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
