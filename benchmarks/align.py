"""Benchmark: trace + align time for CIFAR ResNet-110 vs ResNet-20 and for long synthetic chains.

    .venv/bin/python benchmarks/align.py [--repeats 5] [--threads 1] [--quick]

Prints, from one run, the median wall time of each phase (trace both models, discover blocks,
score and choose pairs) and how the time grows with depth. Not a timed test: numbers depend on the
machine; the ratios between rows are what to read. Measures the CIFAR ResNet builder below (He et
al. 2016: 6n+2 layers, widths 16/32/64, every layer traced), and ``hkt_vision.models.resnet110/
resnet20`` with the vision plugin's adapter when that plugin is installed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from hkt_core.align import align_blocks, discover
from hkt_core.adapters import adapter_for
from hkt_core.plugins import default_manager
from hkt_core.trace import trace


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _CifarResNet(nn.Module):
    def __init__(self, depth: int, classes: int = 10) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            blocks = [_Block(cin, cout, 1 if i == 0 else 2)] + [_Block(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet110() -> nn.Module:
    """CIFAR ResNet-110 (``hkt align benchmarks.align:resnet110 ...`` from the repository root)."""
    return _CifarResNet(110)


def resnet20() -> nn.Module:
    return _CifarResNet(20)


def cifar_resnets() -> list[tuple[nn.Module, nn.Module, str]]:
    """The builder below (generic adapter: every layer traced), and the vision plugin's when installed
    (its adapter keeps stages opaque and declares the blocks)."""
    out = [(_CifarResNet(110), _CifarResNet(20), "benchmarks/align.py builder, generic adapter")]
    manager = default_manager()   # built as ``hkt train`` builds them: registered names, the process's plugins
    if "resnet110" not in manager.registry("models").names():
        return out
    from hkt_core.models import build_model

    return [(build_model("resnet110", manager), build_model("resnet20", manager), "hkt_vision.models, its adapter"),
            *out]


def chain(layers: int, width: int = 32) -> nn.Module:
    """``layers`` Linear+ReLU layers in one Sequential (every layer a top-level module)."""
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*mods[:-1], nn.Linear(width, 10))


def measure(parent: nn.Module, child: nn.Module, inputs, repeats: int, stages: int | None = None) -> dict:
    manager = default_manager()
    adapters = adapter_for(parent, manager), adapter_for(child, manager)
    times: dict[str, list[float]] = {"trace": [], "discover": [], "choose": [], "total": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        tp, tc = trace(parent, inputs, adapters[0]), trace(child, inputs, adapters[1])
        t1 = time.perf_counter()
        bp = discover(tp, adapters[0].declared_blocks(parent))
        bc = discover(tc, adapters[1].declared_blocks(child))
        t2 = time.perf_counter()
        alignment = align_blocks(bp, bc, stages=stages, inputs=inputs)
        t3 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            times[key].append(value)
    out = {k: statistics.median(v) for k, v in times.items()}
    out.update(values=len(tp.order) + len(tc.order), candidates=(len(bp.candidates), len(bc.candidates)),
               alignment=alignment, backends=(tp.backend, tc.backend))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--chains", default="100,250,500,1000,2000")
    parser.add_argument("--quick", action="store_true", help="smoke check: one repeat, two short chains (writes nothing)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.chains = 1, "20,40"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x = (torch.randn(1, 3, 32, 32),)
    for parent, child, source in cifar_resnets():
        measure(parent, child, x, 1)  # warm-up: imports, allocator
        r = measure(parent, child, x, args.repeats)
        print(f"CIFAR ResNet-110 vs ResNet-20 ({source}), batch 1, {args.threads} thread(s), "
              f"median of {args.repeats}")
        print(f"  trace both {r['trace']:.3f} s | discover {r['discover']:.3f} s | score+choose "
              f"{r['choose']:.3f} s | total {r['total']:.3f} s (goal < 1 s)")
        print(f"  values {r['values']}, candidates {r['candidates'][0]} x {r['candidates'][1]}, "
              f"backends {r['backends']}")
        print("  " + r["alignment"].table().replace("\n", "\n  ") + "\n")

    print("synthetic chains: parent L layers vs child L/4 layers, stages=4")
    print(f"  {'L':>5} {'values':>7} {'cand P x C':>11} {'trace s':>8} {'discover s':>10} {'choose s':>9} "
          f"{'total s':>8} {'us/value':>9} {'ns/(value x cand)':>18}")
    base = None
    for layers in (int(v) for v in args.chains.split(",")):
        p, c = chain(layers), chain(max(4, layers // 4))
        inputs = (torch.randn(1, 32),)
        r = measure(p, c, inputs, max(1, args.repeats // 2), stages=4)
        kp, kc = r["candidates"]
        per_value = r["total"] / r["values"] * 1e6
        per_pair = r["total"] / (r["values"] * (kp + kc)) * 1e9
        base = base or r["total"]
        print(f"  {layers:>5} {r['values']:>7} {f'{kp} x {kc}':>11} {r['trace']:>8.3f} {r['discover']:>10.3f} "
              f"{r['choose']:>9.3f} {r['total']:>8.3f} {per_value:>9.1f} {per_pair:>18.1f}   x{r['total'] / base:.1f}")


if __name__ == "__main__":
    main()
