"""Held-back torchvision and timm pairs (never used before in this project, listed before the
first run): each builds a Family at 3 stages, trains a step and exports a child equal to the plain
child. Needs torchvision and timm (a separate venv: they pull another torch). Writes
docs/results/zoo_heldback_vision.json.

    python benchmarks/zoo_heldback_vision.py
"""
import json
import platform
import time
from pathlib import Path

import torch
from hkt_zoo.vision_sources import torchvision_model, timm_model
from hkt_core.align import align
from hkt_core.family import Family
from hkt_core.plugins import default_manager
PAIRS = [("torchvision", "regnet_y_400mf", "mobilenet_v3_small"), ("torchvision", "densenet121", "shufflenet_v2_x0_5"),
         ("torchvision", "wide_resnet50_2", "resnet18"), ("timm", "efficientnet_b0", "mobilenetv3_small_100"),
         ("timm", "resnet26d", "resnet10t")]
m = default_manager()
rows = []
for src, p, c in PAIRS:
    make = torchvision_model if src == "torchvision" else timm_model
    t = time.time()
    try:
        torch.manual_seed(0)
        parent, child = make(name=p, num_classes=10), make(name=c, num_classes=10)
        x = torch.randn(2, 3, 32, 32)
        al = align(parent, child, x, stages=3, manager=m)
        fam = Family(parent, child, al, manager=m)
        loss = fam.loss(fam(x), torch.tensor([0, 4]))
        loss.backward()
        fam.eval()
        with torch.no_grad():
            eq = torch.equal(fam.export_child().eval()(x), child.eval()(x))
        pts = [(b.parent, b.child) for b in al.pairs] if hasattr(al, "pairs") else str(al)[:200]
        rows.append({"source": src, "parent": p, "child": c, "ok": bool(torch.isfinite(loss)) and eq,
                     "export_equal": eq, "seconds": round(time.time() - t, 2),
                     "points": [list(x) for x in pts]})
        print(f"{src} {p}->{c}: ok finite={bool(torch.isfinite(loss))} export_equal={eq} {time.time()-t:.1f}s points={pts}", flush=True)
    except Exception as e:
        rows.append({"source": src, "parent": p, "child": c, "ok": False, "error": f"{type(e).__name__}: {e}"[:300]})
        print(f"{src} {p}->{c}: FAIL {type(e).__name__}: {str(e)[:300]}", flush=True)

import torchvision  # noqa: E402
import timm  # noqa: E402
out = Path(__file__).resolve().parents[1] / "docs" / "results" / "zoo_heldback_vision.json"
out.write_text(json.dumps({"versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                                        "timm": timm.__version__, "python": platform.python_version()},
                           "pairs": rows}, indent=2) + "\n")
print(f"wrote {out}")
