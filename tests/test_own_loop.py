"""docs/engine.md's "Family in your own training loop" program runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file

DOC = Path(__file__).resolve().parents[1] / "docs" / "engine.md"


def own_loop_program() -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- own-loop-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/engine.md lost its own-loop example (marked <!-- own-loop-example -->)"
    return match.group(1)


def test_own_loop_example_trains_and_exports_the_child(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "own_loop_example"}
    exec(compile(own_loop_program(), str(DOC), "exec"), namespace)

    family, child, parent, deployed = (namespace[k] for k in ("family", "child", "parent", "deployed"))
    assert type(deployed) is type(child) and deployed is not child
    assert not any(p.requires_grad for p in parent.parameters())
    # the export holds the trained child's weights under the child's own keys
    saved = load_file(tmp_path / "child.safetensors")
    assert saved.keys() == child.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in child.state_dict().items())
    # in eval mode the exported child computes exactly the Family's native stream
    family.eval()
    x = namespace["images"][:16]
    with torch.no_grad():
        assert torch.equal(deployed(x), family(x).native)
    # the frozen parent ran in eval mode only: its fresh BatchNorm statistics were never updated
    bn = parent[1]
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert "child accuracy on the training data" in capsys.readouterr().out
