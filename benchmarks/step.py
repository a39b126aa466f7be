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

from hkt_core import HKTConfig, builtins, get_plugin_manager
from hkt_core.etm import genetic_attention
from hkt_core.family import Family


# -- models ---------------------------------------------------------------------------------------
def _local_resnet(depth: int) -> nn.Module:
    """He et al.'s CIFAR ResNet (option-A shortcuts), used when hkt_vision is not installed."""

    class Shortcut(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            x = x[:, :, ::self.stride, ::self.stride]
            return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = Shortcut(cin, cout, stride) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class Pool(nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    class ResNet(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            stages, cin = [], 16
            for cout, stride in ((16, 1), (32, 2), (64, 2)):
                stages.append(nn.Sequential(*[Block(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                              for i in range(n)]))
                cin = cout
            self.layer1, self.layer2, self.layer3 = stages
            self.pool = Pool()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(self.pool(self.layer3(self.layer2(self.layer1(self.stem(x))))))

    return ResNet((depth - 2) // 6)


def cifar_resnets() -> tuple[nn.Module, nn.Module, str]:
    try:
        from hkt_vision.models import resnet20, resnet110
        return resnet110(), resnet20(), "hkt_vision.models"
    except ImportError:
        return _local_resnet(110), _local_resnet(20), "benchmark-local builder"


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.pool(model.layer3(model.layer2(model.layer1(model.stem(x)))))


# -- steps ----------------------------------------------------------------------------------------
def mae(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.softmax(1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)).abs().mean()


def make_steps(parent: nn.Module, child: nn.Module, batch: int) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    lam, (a1, a2, a3) = 0.6, (0.25, 0.5, 0.25)
    parent.eval().requires_grad_(False)
    naive_parent = copy.deepcopy(parent).train().requires_grad_(True)
    manager = get_plugin_manager(autoload=False, plugins={"core": builtins})

    class Task:
        loss = staticmethod(F.cross_entropy)
        inherit_loss = staticmethod(mae)

    example = torch.randn(2, 3, 32, 32)
    fam2 = Family(parent, child, [("pool", "pool"), ("fc", "fc")], HKTConfig.preset("paper", lam=lam),
                  example_inputs=example, task=Task(), manager=manager)
    fam3 = Family(parent, child, [("layer2", "layer2"), ("pool", "pool"), ("fc", "fc")], HKTConfig.preset("paper", lam=lam),
                  example_inputs=example, task=Task(), manager=manager)

    def child_step(x, y):
        return F.cross_entropy(child(x), y)

    def kd_step(x, y, t=4.0, w=0.9):
        with torch.no_grad():
            teacher = parent(x)
        student = child(x)
        kl = F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean")
        return w * t * t * kl + (1 - w) * F.cross_entropy(student, y)

    def gate(q, v):
        s = torch.sigmoid((q * v).sum(1, keepdim=True) / q.shape[1] ** 0.5)
        return q + lam * (1 - s) * (v - q)

    def naive_step(x, y):
        fp = features(naive_parent, x)                 # train mode, autograd through the parent
        native = child(x)                              # first child forward
        fc = features(child, x)                        # second child forward
        inherited = child.fc(gate(fc, fp))
        head = naive_parent.fc(gate(fp, fc))
        return F.cross_entropy(native, y) + F.cross_entropy(inherited, y) + F.cross_entropy(head, y)

    def hand_step(x, y):
        with torch.no_grad():
            fp = features(parent, x)
        fc = features(child, x)
        native = child.fc(fc)
        inherited = child.fc(fc + lam * genetic_attention(fc, fp))
        head = parent.fc(fp + lam * genetic_attention(fp, fc))
        return a1 * mae(inherited, y) + a2 * F.cross_entropy(native, y) + a3 * mae(head, y)

    def family_step(fam):
        def step(x, y):
            return fam.loss(fam(x), y)
        return step

    return {"child": child_step, "kd": kd_step, "naive": naive_step, "hand": hand_step,
            "family-2hkt": family_step(fam2), "family-3hkt": family_step(fam3)}, [fam2, fam3, naive_parent]


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


def run(batches: list[int], rounds: int, warmup: int) -> list[dict]:
    torch.manual_seed(0)
    parent, child, source = cifar_resnets()
    print(f"models from {source}; parent {sum(p.numel() for p in parent.parameters()) / 1e6:.2f}M params, "
          f"child {sum(p.numel() for p in child.parameters()) / 1e6:.2f}M; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    results = []
    for batch in batches:
        steps, keep = make_steps(parent, child, batch)
        trainable = [p for p in child.parameters()] + [p for f in keep[:2] for p in f.points.parameters()]
        optimiser = torch.optim.SGD(trainable, lr=0.01, momentum=0.9)
        x = torch.randn(batch, 3, 32, 32)
        y = torch.randint(0, 10, (batch,))
        times: dict[str, list[float]] = {name: [] for name in steps}
        walls: dict[str, list[float]] = {name: [] for name in steps}
        for r in range(warmup + rounds):
            for name, step in steps.items():
                child.train()
                optimiser.zero_grad(set_to_none=True)
                keep[2].zero_grad(set_to_none=True)
                start, wall = time.process_time(), time.perf_counter()
                step(x, y).backward()
                optimiser.step()
                if r >= warmup:
                    times[name].append(time.process_time() - start)
                    walls[name].append(time.perf_counter() - wall)
        memory = {}
        for name, step in steps.items():
            optimiser.zero_grad(set_to_none=True)
            memory[name] = saved_activation_bytes(step, x, y)
        kd = statistics.median(times["kd"])
        hand = statistics.median(times["hand"])
        for name in steps:
            med = statistics.median(times[name])
            results.append({"batch": batch, "step": name, "ms": 1000 * med,
                            "wall_ms": 1000 * statistics.median(walls[name]), "vs_kd": med / kd,
                            "vs_hand": med / hand, "saved_mb": memory[name] / 2**20})
    return results


def table(results: list[dict]) -> str:
    lines = ["| batch | step | CPU ms (median) | x KD | x hand-written | wall ms | saved activations (MB) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['batch']} | {r['step']} | {r['ms']:.0f} | {r['vs_kd']:.2f} | {r['vs_hand']:.2f} "
                     f"| {r['wall_ms']:.0f} | {r['saved_mb']:.1f} |")
    return "\n".join(lines)


# -- compiled vs eager ----------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
COMPILE_JSON = ROOT / "docs" / "results" / "compile.json"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- compile-ratio:begin -->", "<!-- compile-ratio:end -->"


def compile_pair(name: str) -> tuple[nn.Module, nn.Module, str]:
    """``resnet56`` or ``resnet110`` parent -> ResNet-20 child (hkt_vision's, else the local builder)."""
    depth = {"resnet56": 56, "resnet110": 110}[name]
    try:
        from hkt_vision import models

        return getattr(models, name)(), models.resnet20(), "hkt_vision.models"
    except ImportError:
        return _local_resnet(depth), _local_resnet(20), "benchmark-local builder"


def compiled_vs_eager(parent_name: str, batch: int, rounds: int, warmup: int) -> dict:
    """CPU ms per step of KD and 2HKT, eager and compiled, measured round-robin in this process."""
    from hkt_core.train.compiling import CompileReport, compile_family, compile_module

    torch.manual_seed(0)
    parent, child, source = compile_pair(parent_name)
    parent.eval().requires_grad_(False)
    manager = get_plugin_manager(autoload=False, plugins={"core": builtins})

    class Task:
        loss = staticmethod(F.cross_entropy)
        inherit_loss = staticmethod(mae)

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


def write_compile_section(results: dict, doc: Path = PERFORMANCE_DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} section to fill")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + render_compile_section(results) + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=5, help="measured steps per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--compiled", action="store_true",
                        help="compiled vs eager KD and 2HKT; writes docs/results/compile.json and docs/performance.md")
    parser.add_argument("--render", action="store_true", help="regenerate docs/performance.md from compile.json only")
    parser.add_argument("--parent", choices=("resnet56", "resnet110"), default="resnet56",
                        help="the parent of the --compiled measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.render:
        write_compile_section(json.loads(COMPILE_JSON.read_text(encoding="utf-8")))
        return 0
    if args.compiled:
        results = compiled_vs_eager(args.parent, args.batches[0], args.rounds, args.warmup)
        COMPILE_JSON.parent.mkdir(parents=True, exist_ok=True)
        COMPILE_JSON.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        write_compile_section(results)
        print(render_compile_section(results))
        return 0
    print(table(run(args.batches, args.rounds, args.warmup)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
