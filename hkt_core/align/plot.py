"""A picture of an alignment: the two networks as columns of blocks, lines between aligned ones.

Each column lists a model's block structure in forward order: its repeated-block outputs, stage
ends marked (only the stage ends when there are too many to read) and the features its head
reads; for a model without repeated blocks, its top-level and second-level module outputs that
are candidates (only top-level ones when there are too many). Then every aligned block and the
prediction, each with its shape and kind (``map 8x8``, ``tokens 1+16 (4x4)``,
``vector``). Aligned blocks are filled; a line joins each pair, labelled with its score (and its
CKA for the activation method, and the two kinds when they differ); the last line (the
predictions) is dashed.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .blocks import Block, BlockGraph
from .record import Alignment

MAX_ROWS = 28
FORMATS = (".png", ".svg")


def _column(bg: BlockGraph, aligned: set[str]) -> list[Block]:
    blocks = [b for b in bg.candidates if b.block_output or b.head_input]
    if len(blocks) + len(aligned) > MAX_ROWS:
        blocks = [b for b in blocks if b.stage_end or b.head_input]
    if not blocks:
        blocks = [b for b in bg.candidates if b.module_output and b.level <= 1]
    if len(blocks) + len(aligned) > MAX_ROWS:
        blocks = [b for b in blocks if b.level == 0]
    if len(blocks) + len(aligned) > MAX_ROWS:
        blocks = []
    names = {b.name for b in blocks}
    extra = [bg.block(n) for n in aligned if n not in names and n != bg.prediction.name]
    column = sorted([*blocks, *extra], key=lambda b: b.index)
    return [*column, bg.prediction]


def _shape_text(shape) -> str:
    return "x".join(str(d) for d in shape[1:])


def plot_alignment(alignment: Alignment, path: str | Path, parent: BlockGraph, child: BlockGraph,
                   title: str | None = None) -> Path:
    """Write the alignment diagram to ``path`` (.png or .svg); returns the path."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"--plot {path}: unsupported picture format {path.suffix or '(none)'}; use .png or .svg")
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.patches import FancyBboxPatch
    except ImportError:
        raise ConfigError("drawing needs matplotlib: pip install 'hkt[plots]'") from None

    left = _column(parent, {p.parent for p in alignment.pairs})
    right = _column(child, {p.child for p in alignment.pairs})
    rows = max(len(left), len(right))
    fig, ax = plt.subplots(figsize=(10, 0.45 * rows + 1.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(-rows - 0.5, 1.2)
    ax.axis("off")
    aligned_p = {p.parent for p in alignment.pairs}
    aligned_c = {p.child for p in alignment.pairs}
    centres: dict[tuple[str, str], tuple[float, float]] = {}

    def draw(column, x, side, aligned, model_name):
        step = rows / max(len(column), 1)
        ax.text(x + 1.5, 0.6, f"{side}: {model_name}", ha="center", va="center", fontsize=10, weight="bold")
        for k, b in enumerate(column):
            y = -(k + 0.5) * step
            filled = b.name in aligned
            ax.add_patch(FancyBboxPatch((x, y - 0.32), 3.0, 0.64, boxstyle="round,pad=0.02",
                                        facecolor="#cfe3f7" if filled else "white",
                                        edgecolor="#1f5f9f" if filled else "#999999", linewidth=1.2))
            role = " (stage end)" if b.stage_end else " (head input)" if b.head_input else ""
            ax.text(x + 1.5, y, f"{b.name}{role}  [{_shape_text(b.shape)}]  {b.value_kind.describe()}", ha="center",
                    va="center", fontsize=7)
            centres[(side, b.name)] = (x, y)

    draw(left, 0.3, "parent", aligned_p, type(parent.traced.model).__name__)
    draw(right, 6.7, "child", aligned_c, type(child.traced.model).__name__)
    for i, pair in enumerate(alignment.pairs):
        (xp, yp), (xc, yc) = centres[("parent", pair.parent)], centres[("child", pair.child)]
        last = i == len(alignment.pairs) - 1
        ax.plot([xp + 3.0, xc], [yp, yc], color="#c0392b", linewidth=1.6, linestyle="--" if last else "-")
        label = f"{i + 1}: {pair.score:.2f}" + (f" (CKA {pair.cka:.2f})" if pair.cka is not None else "")
        if pair.parent_kind != pair.child_kind:
            label += f"\n{pair.parent_kind} -> {pair.child_kind}"
        ax.text((xp + 3.0 + xc) / 2, (yp + yc) / 2 + 0.15, label, ha="center", fontsize=7.5, color="#c0392b")
    ax.set_title(title or f"{alignment.stages}HKT alignment ({alignment.method})", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    from ..io import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:].lower(), dpi=110))
    plt.close(fig)
    return path
