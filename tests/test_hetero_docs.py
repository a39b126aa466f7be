"""The heterogeneous results in docs/alignment.md are the committed comparison's numbers."""

from __future__ import annotations

import json
from pathlib import Path

from hkt_core.train.compare import format_table

ROOT = Path(__file__).resolve().parents[1]


def test_alignment_doc_quotes_the_committed_comparison():
    doc = (ROOT / "docs" / "alignment.md").read_text(encoding="utf-8")
    data = json.loads((ROOT / "docs" / "results" / "hetero" / "hetero-digits-cnn-vit.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert format_table(data["rows"], markdown=True).strip() in doc
    names = {"baseline": "baseline", "kd": "KD", "hkt": "HKT"}
    for method, label in names.items():
        values = " / ".join(f"{100 * v:.2f}" for v in rows[method]["values"])
        assert f"{label} {values}" in doc.replace("\n", " "), (label, values)
    gains = [100 * (h - b) for h, b in zip(rows["hkt"]["values"], rows["baseline"]["values"])]
    assert all(g > 0 for g in gains)
    assert f"by {gains[0]:.1f}, {gains[1]:.1f} and {gains[2]:.1f} points" in doc.replace("\n", " ")
    assert f"a mean of {sum(gains) / 3:.1f} points" in doc.replace("\n", " ")
