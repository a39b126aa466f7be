"""``hkt_core.align``: trace two models, discover their blocks, choose N aligned pairs.

Rule for ``stages=None``: N = 1 + the number of spatial resolutions with more than one position
(map, token or sequence extents) at which both models have candidate blocks, clamped to [1, 4]
mixing points and to what order-preserving compatible pairs allow. A CIFAR ResNet pair (32x32,
16x16, 8x8 stages) gets N = 4; an MLP or a token model with one sequence length gets N = 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..adapters import Adapter, adapter_for
from ..errors import AlignmentError
from ..trace.graph import evaluation, trace
from .blocks import Block, BlockGraph, discover
from .record import Alignment, BlockPair
from .resolve import unknown_node_error
from .score import MIN_CALIBRATION, centered_gram, cka_matrix, compatible, structural_matrix, structural_score
from .solve import choose_pairs, longest_chain

METHODS = ("structural", "activation")
MAX_AUTO_MIXING = 4


def analyse(model: nn.Module, example_inputs: Any, adapter: Adapter | None = None, *,
            manager: Any = None) -> BlockGraph:
    """Trace ``model`` and discover its candidate blocks (the adapter may declare them).

    Without ``adapter``, the one ``manager`` (default: the process-wide manager) has for ``model``.
    """
    if adapter is None:
        adapter = adapter_for(model, _manager(manager))
    traced = trace(model, example_inputs, adapter)
    return discover(traced, adapter.declared_blocks(model))


def _manager(manager: Any) -> Any:
    if manager is not None:
        return manager
    from ..plugins import default_manager

    return default_manager()


def align(parent: nn.Module, child: nn.Module, example_inputs: Any, stages: int | None = None,
          method: str = "structural", pairs: Sequence[tuple[str, str]] | None = None, *,
          manager: Any = None) -> Alignment:
    """Align ``parent``'s blocks to ``child``'s; the last pair is the two models' predictions.

    ``example_inputs`` (a tensor or a tuple of tensors) feed both models; with
    ``method="activation"`` they are also the calibration batch (at least 8 samples).
    ``pairs`` gives the mixing points by hand (names per the naming rule; the predictions pair
    may be given last or left implied) and is validated instead of searched. ``manager`` is the
    plugin manager the models' adapters come from (default: the process-wide one).
    """
    if method not in METHODS:
        raise AlignmentError(f"method={method!r} is not supported; choose one of {', '.join(METHODS)}")
    if stages is not None and (not isinstance(stages, int) or isinstance(stages, bool) or stages < 2):
        raise AlignmentError(f"stages={stages!r} is invalid: an integer >= 2 (N-1 mixing points plus the "
                             f"predictions), or None to choose N automatically")
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    _check_calibration(method, inputs)
    manager = _manager(manager)
    bp = analyse(parent, inputs, manager=manager)
    bc = analyse(child, inputs, manager=manager)
    return align_blocks(bp, bc, stages=stages, method=method, pairs=pairs, inputs=inputs)


def align_blocks(bp: BlockGraph, bc: BlockGraph, *, stages: int | None = None, method: str = "structural",
                 pairs: Sequence[tuple[str, str]] | None = None,
                 inputs: tuple[torch.Tensor, ...] = ()) -> Alignment:
    """Alignment of two analysed models (see :func:`align`)."""
    if method not in METHODS:
        raise AlignmentError(f"method={method!r} is not supported; choose one of {', '.join(METHODS)}")
    if pairs is None:
        _check_calibration(method, inputs)
    pp, pc = bp.prediction, bc.prediction
    if pp.shape != pc.shape:
        raise AlignmentError(f"the predictions differ in shape: parent {bp.traced.prediction!r} "
                             f"{list(pp.shape)} vs child {bc.traced.prediction!r} {list(pc.shape)}; both "
                             f"models must predict the same task (for several outputs, the adapter's "
                             f"prediction() picks the one that counts)")
    if pairs is not None:
        chosen = _manual(bp, bc, pairs, stages)
    else:
        chosen = _automatic(bp, bc, stages, method, inputs)
    out_score = structural_score(pp, pc)
    result = [*chosen, BlockPair(pp.name, pc.name, pp.shape, pc.shape, out_score, "predictions")]
    return Alignment(pairs=tuple(result), input_shapes=bp.traced.input_shapes,
                     method="manual" if pairs is not None else method, traced=(bp.traced, bc.traced))


def _check_calibration(method: str, inputs: tuple[torch.Tensor, ...]) -> None:
    if method != "activation":
        return
    batch = inputs[0].shape[0] if inputs and inputs[0].dim() else 0
    if batch < MIN_CALIBRATION:
        raise AlignmentError(f"method='activation' compares activations on a calibration batch of at least "
                             f"{MIN_CALIBRATION} samples; the example inputs have batch {batch} "
                             f"(use a larger batch, e.g. --input-shape {MIN_CALIBRATION},...)")


def _describe(p: Block, c: Block) -> str:
    if compatible(p, c):
        parts = [f"{p.layout} {'x'.join(map(str, p.resolution))}".strip()]
    else:
        parts = [f"resolution differs ({p.layout} {list(p.resolution)} vs {c.layout} {list(c.resolution)}): "
                 f"Transfer resizes"]
    parts.append(f"depth {p.depth:.2f}/{c.depth:.2f}")
    if p.cut and c.cut:
        parts.append("cut points")
    if p.module_output and c.module_output and p.level <= 1 and c.level <= 1:
        parts.append("module outputs")
    if p.change and c.change:
        parts.append("stage changes")
    return "; ".join(parts)


def auto_stage_count(bp: BlockGraph, bc: BlockGraph) -> int:
    """N for ``stages=None`` (module docstring)."""
    def levels(bg: BlockGraph) -> set[tuple]:
        return {(b.layout, b.resolution) for b in bg.candidates if b.resolution and np.prod(b.resolution) > 1}

    shared = levels(bp) & levels(bc)
    return 1 + max(1, min(len(shared), MAX_AUTO_MIXING))


def _resolutions(bg: BlockGraph) -> str:
    seen = []
    for b in bg.candidates:
        key = f"{b.layout} {'x'.join(map(str, b.resolution)) or '-'}"
        if key not in seen:
            seen.append(key)
    return ", ".join(seen) or "none"


def _automatic(bp: BlockGraph, bc: BlockGraph, stages: int | None, method: str,
               inputs: tuple[torch.Tensor, ...]) -> list[BlockPair]:
    P, C = bp.candidates, bc.candidates
    scores, ok = structural_matrix(P, C)
    if method == "activation":
        scores = (scores + _cka(bp, bc, inputs)) / 2.0
    most = longest_chain(ok)
    if most == 0:
        raise AlignmentError(
            f"no resolution-compatible block pairs between {type(bp.traced.model).__name__} and "
            f"{type(bc.traced.model).__name__}: parent candidates are at [{_resolutions(bp)}], child "
            f"candidates at [{_resolutions(bc)}]; give pairs by hand (pairs=[...] / --pair P=C) or "
            f"declare blocks in an adapter")
    if stages is None:
        count = min(auto_stage_count(bp, bc) - 1, most)
    else:
        count = stages - 1
        if count > most:
            raise AlignmentError(f"stages={stages} needs {count} order-preserving resolution-compatible "
                                 f"mixing pairs, but these models allow at most {most} (stages <= {most + 1}); "
                                 f"parent candidates: {len(P)}, child candidates: {len(C)}")
    depth_p = np.array([b.depth for b in P])
    depth_c = np.array([b.depth for b in C])
    picked = choose_pairs(scores, ok, depth_p, depth_c, count)
    assert picked is not None  # count <= longest chain
    return [BlockPair(P[i].name, C[j].name, P[i].shape, C[j].shape, float(scores[i, j]), _describe(P[i], C[j]))
            for i, j in picked]


class _Capture(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, wanted: set[fx.Node]) -> None:
        super().__init__(gm)
        self.wanted = wanted
        self.values: dict[fx.Node, torch.Tensor] = {}

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        if n in self.wanted and isinstance(value, torch.Tensor):
            self.values[n] = value
        return value


def activations(bg: BlockGraph, names: Sequence[str], inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The values of ``names`` on ``inputs`` (eval mode, no autograd)."""
    nodes = [bg.traced.nodes[n] for n in names]
    capture = _Capture(bg.traced.gm, set(nodes))
    with evaluation(bg.traced.model):
        capture.run(*inputs)
    return [capture.values[n] for n in nodes]


def _cka(bp: BlockGraph, bc: BlockGraph, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    gp = [centered_gram(a) for a in activations(bp, [b.name for b in bp.candidates], inputs)]
    gc = [centered_gram(a) for a in activations(bc, [b.name for b in bc.candidates], inputs)]
    return cka_matrix(gp, gc)


def _canonical(bg: BlockGraph, name: Any, side: str) -> str:
    if not isinstance(name, str) or not name:
        raise AlignmentError(f"manual pair names must be non-empty strings, got {side} {name!r}")
    try:
        return bg.traced.canonical(name)
    except KeyError:
        raise unknown_node_error(bg.traced, name, f"{side} node") from None


def _manual(bp: BlockGraph, bc: BlockGraph, pairs: Sequence[tuple[str, str]], stages: int | None) -> list[BlockPair]:
    if isinstance(pairs, (str, bytes)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise AlignmentError(f"pairs must be a list of (parent_node, child_node) pairs, got {pairs!r}")
    resolved = [(_canonical(bp, p, "parent"), _canonical(bc, c, "child")) for p, c in pairs]
    preds = (bp.traced.prediction, bc.traced.prediction)
    if resolved and resolved[-1] == preds:
        resolved = resolved[:-1]
    if not resolved:
        raise AlignmentError("a manual alignment needs at least one mixing pair before the predictions")
    for p, c in resolved:
        if p == preds[0] or c == preds[1]:
            raise AlignmentError(f"pair ({p!r}, {c!r}) uses a prediction; the predictions are the last pair "
                                 f"({preds[0]!r}, {preds[1]!r}) and may only be given last")
    if stages is not None and len(resolved) + 1 != stages:
        raise AlignmentError(f"stages={stages} but {len(resolved)} mixing pairs were given "
                             f"(+ the predictions = {len(resolved) + 1})")
    for bg, side, names in ((bp, "parent", [p for p, _ in resolved]), (bc, "child", [c for _, c in resolved])):
        for name in names:
            if name in bg.traced.inputs:
                raise AlignmentError(f"{side} node {name!r} is a model input; mixing points are values the "
                                     f"model computes, e.g. {', '.join(bg.near(name))}")
            if not bg.is_ancestor(name, bg.traced.prediction) or not any(
                    bg.is_ancestor(i, name) for i in bg.traced.inputs):
                raise AlignmentError(f"{side} node {name!r} does not lie between the inputs and the prediction "
                                     f"{bg.traced.prediction!r}; valid candidates near it: "
                                     f"{', '.join(bg.near(name))}")
    for i in range(len(resolved)):
        for j in range(i + 1, len(resolved)):
            (pi, ci), (pj, cj) = resolved[i], resolved[j]
            for bg, side, a, b in ((bp, "parent", pi, pj), (bc, "child", ci, cj)):
                if bg.is_ancestor(b, a):
                    raise AlignmentError(
                        f"manual pairs {i + 1} ({pi!r}, {ci!r}) and {j + 1} ({pj!r}, {cj!r}) are out of order: in "
                        f"the {side}, {b!r} {'is' if a == b else 'comes before'} {a!r}, so mixing there would make the joint graph cyclic; keep pairs "
                        f"in forward order on both sides. Valid {side} candidates near them: "
                        f"{', '.join(bg.near(a))}")
    out = []
    for p, c in resolved:
        blk_p, blk_c = bp.block(p), bc.block(c)
        out.append(BlockPair(p, c, blk_p.shape, blk_c.shape, structural_score(blk_p, blk_c),
                             "manual; " + _describe(blk_p, blk_c)))
    return out
