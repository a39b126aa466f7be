"""``hkt_core.align``: trace two models, discover their blocks, choose N aligned pairs.

Rule for ``stages=None``: N = 1 + the number of spatial resolutions with more than one position
(map, token or sequence extents) at which both models have candidate blocks, clamped to [1, 4]
mixing points and to what order-preserving compatible pairs allow. A CIFAR ResNet pair (32x32,
16x16, 8x8 stages) gets N = 4; an MLP or a token model with one sequence length gets N = 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn

from ..adapters import Adapter, adapter_for
from ..errors import AlignmentError
from ..trace.graph import trace
from .blocks import Block, BlockGraph, discover
from .record import Alignment, BlockPair
from .resolve import unknown_node_error
from ..trace.kinds import mixing_pair_problem
from .activation import Calibration, as_calibration, cka_scores
from .score import MIN_CALIBRATION, boundary_bonus, matched, structural_matrix, structural_score
from .solve import Levels, choose_pairs, inner_mask, longest_chain, random_pairs

METHODS = ("structural", "activation", "random")
MAX_AUTO_MIXING = 4


def analyse(model: nn.Module, example_inputs: Any, adapter: Adapter | None = None, *,
            manager: Any = None, layouts: Mapping[str, str] | None = None, side: str = "") -> BlockGraph:
    """Trace ``model`` and discover its candidate blocks (the adapter may declare them).

    Without ``adapter``, the one ``manager`` (default: the process-wide manager) has for ``model``.
    ``layouts`` states value layouts (see :mod:`hkt_core.trace.kinds`); ``side`` is ``parent`` or
    ``child`` for entries prefixed with it.
    """
    if adapter is None:
        adapter = adapter_for(model, _manager(manager))
    traced = trace(model, example_inputs, adapter)
    return discover(traced, adapter.declared_blocks(model), layouts=layouts, side=side)


def _manager(manager: Any) -> Any:
    from ..plugins.host import resolve_manager

    return resolve_manager(manager)


def align(parent: nn.Module, child: nn.Module, example_inputs: Any, stages: int | None = None,
          method: str = "structural", pairs: Sequence[tuple[str, str]] | None = None, *,
          layouts: Mapping[str, str] | None = None, calibration: Any = None,
          batch_size: int = 64, manager: Any = None, seed: int | None = None) -> Alignment:
    """Align ``parent``'s blocks to ``child``'s; the last pair is the two models' predictions.

    ``example_inputs`` (a tensor or a tuple of tensors) feed both models. ``method="activation"``
    adds linear CKA between the two models' activations on ``calibration`` (a
    :class:`~hkt_core.align.activation.Calibration`, e.g. from
    :func:`~hkt_core.align.activation.calibration_from_dataset`, or a tensor / tuple of tensors of
    samples; default: the example inputs, at least 8 samples), run ``batch_size`` samples at a
    time in eval mode. ``pairs`` gives the mixing points by hand (names per the naming rule; the
    predictions pair may be given last or left implied) and is validated instead of searched.
    ``layouts`` states the layout of values the graph reading gets wrong
    (``{"encoder.out": "tokens"}``; ``"parent:name"`` / ``"child:name"`` for one side).
    ``manager`` is the plugin manager the models' adapters come from (default: the process-wide one).
    ``method="random"`` is the control of an alignment claim: ``stages - 1`` order-preserving pairs
    that can mix, drawn uniformly among all such chains with ``seed`` (recorded in the alignment);
    the predictions pair stays last.
    """
    if method not in METHODS:
        raise AlignmentError(f"method={method!r} is not supported; choose one of {', '.join(METHODS)}")
    check_stages(stages)
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if calibration is None:
        _check_calibration(method, inputs)
    manager = _manager(manager)
    bp = analyse(parent, inputs, manager=manager, layouts=layouts, side="parent")
    bc = analyse(child, inputs, manager=manager, layouts=layouts, side="child")
    return align_blocks(bp, bc, stages=stages, method=method, pairs=pairs, inputs=inputs,
                        calibration=calibration, batch_size=batch_size, seed=seed)


def check_stages(stages: Any) -> None:
    """The one rule for N (the API's ``stages=`` and the CLI's ``--stages``): None or an integer >= 2."""
    if stages is not None and (not isinstance(stages, int) or isinstance(stages, bool) or stages < 2):
        raise AlignmentError(f"stages={stages!r} is invalid: an integer >= 2 (N-1 mixing points plus the "
                             f"predictions), or None to choose N automatically")


def align_blocks(bp: BlockGraph, bc: BlockGraph, *, stages: int | None = None, method: str = "structural",
                 pairs: Sequence[tuple[str, str]] | None = None,
                 inputs: tuple[torch.Tensor, ...] = (), calibration: Any = None,
                 batch_size: int = 64, seed: int | None = None) -> Alignment:
    """Alignment of two analysed models (see :func:`align`)."""
    check_stages(stages)
    if method not in METHODS:
        raise AlignmentError(f"method={method!r} is not supported; choose one of {', '.join(METHODS)}")
    if method == "random":
        if pairs is not None:
            raise AlignmentError("method='random' draws the mixing points; it takes no pairs= (give either)")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise AlignmentError(f"method='random' needs seed= a non-negative integer, got {seed!r}")
    calib: Calibration | None = None
    if method == "activation":
        if calibration is None:
            _check_calibration(method, inputs)
        calib = as_calibration(calibration if calibration is not None else inputs)
    pp, pc = bp.prediction, bc.prediction
    if pp.shape != pc.shape:
        raise AlignmentError(f"the predictions differ in shape: parent {bp.traced.prediction!r} "
                             f"{list(pp.shape)} vs child {bc.traced.prediction!r} {list(pc.shape)}; both "
                             f"models must predict the same task (for several outputs, the adapter's "
                             f"prediction() picks the one that counts)")
    cka = cka_scores(bp, bc, calib, batch_size) if calib is not None and pairs is None else None
    if pairs is not None:
        chosen = _manual(bp, bc, pairs, stages)
    elif method == "random":
        chosen = _random(bp, bc, stages, seed)
    else:
        chosen = _automatic(bp, bc, stages, cka)
    out_score = structural_score(pp, pc)
    result = [*chosen, _pair(pp, pc, out_score, "predictions")]
    return Alignment(pairs=tuple(result), input_shapes=bp.traced.input_shapes,
                     method="manual" if pairs is not None else method,
                     calibration=calib.describe() if calib is not None and pairs is None else None,
                     layouts={**bp.layouts, **bc.layouts}, traced=(bp.traced, bc.traced),
                     seed=seed if method == "random" else None)


def _pair(p: Block, c: Block, score: float, reason: str, cka: float | None = None) -> BlockPair:
    return BlockPair(p.name, c.name, p.shape, c.shape, score, reason, parent_kind=p.kind, child_kind=c.kind,
                     cka=cka)


def _check_calibration(method: str, inputs: tuple[torch.Tensor, ...]) -> None:
    if method != "activation":
        return
    batch = inputs[0].shape[0] if inputs and inputs[0].dim() else 0
    if batch < MIN_CALIBRATION:
        raise AlignmentError(f"method='activation' compares activations on a calibration batch of at least "
                             f"{MIN_CALIBRATION} samples; the example inputs have batch {batch} "
                             f"(use a larger batch, e.g. --input-shape {MIN_CALIBRATION},...)")


def _describe(p: Block, c: Block) -> str:
    pk, ck = p.value_kind, c.value_kind
    if matched(p, c):
        parts = [pk.describe()]
    elif p.kind == c.kind:
        parts = [f"resolution differs ({pk.describe()} vs {ck.describe()}): the transfer resizes"]
    else:
        parts = [f"{pk.describe()} -> {ck.describe()}: cross-kind transfer"]
    parts.append(f"depth {p.depth:.2f}/{c.depth:.2f}")
    if p.block_output and c.block_output:
        parts.append(f"blocks {p.position_text} and {c.position_text}")
    if p.tiers > 1 or c.tiers > 1:
        parts.append(f"levels {p.tier}/{p.tiers} and {c.tier}/{c.tiers}")
    if p.head_input and c.head_input:
        parts.append("features the heads read")
    elif p.stage_end and c.stage_end:
        parts.append("stage ends")
    elif p.block_output and c.block_output:
        parts.append("block outputs")
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
        return {(b.kind, b.resolution) for b in bg.candidates if b.resolution and np.prod(b.resolution) > 1}

    shared = levels(bp) & levels(bc)

    def one_level(bg: BlockGraph) -> bool:  # repeated blocks that all keep one resolution (a transformer)
        outs = [b for b in bg.candidates if b.block_output]
        return bool(outs) and len({(b.kind, b.resolution) for b in outs}) == 1

    if len(shared) == 1 and one_level(bp) and one_level(bc):
        return 3  # no resolution stages: a point half-way through the layers, and the head's features
    return 1 + max(1, min(len(shared), MAX_AUTO_MIXING))


def _resolutions(bg: BlockGraph) -> str:
    seen = []
    for b in bg.candidates:
        key = b.value_kind.describe()
        if key not in seen:
            seen.append(key)
    return ", ".join(seen) or "none"


def _automatic(bp: BlockGraph, bc: BlockGraph, stages: int | None, cka: np.ndarray | None) -> list[BlockPair]:
    """Matched pairs (same kind and resolution) when they allow the count, else every pair that can mix."""
    P, C = bp.candidates, bc.candidates
    scores, same, ok = structural_matrix(P, C)
    if cka is not None:
        scores = (scores + cka) / 2.0
    most_same, most = longest_chain(same), longest_chain(ok)
    if most == 0:
        raise AlignmentError(
            f"no block pairs that can mix between {type(bp.traced.model).__name__} and "
            f"{type(bc.traced.model).__name__}: parent candidates are [{_resolutions(bp)}], child "
            f"candidates [{_resolutions(bc)}] (a transfer connects vectors with anything, maps with maps of "
            f"as many spatial axes, tokens with tokens and 1-D maps, tokens on a grid with maps); give pairs "
            f"by hand (pairs=[...] / --pair P=C), state layouts, or declare blocks in an adapter")
    if stages is None:
        count = min(auto_stage_count(bp, bc) - 1, most_same) if most_same else 1
    else:
        count = stages - 1
        if count > most:
            raise AlignmentError(f"stages={stages} needs {count} order-preserving mixing pairs that can mix, but "
                                 f"these models allow at most {most} (stages <= {most + 1}); parent candidates: "
                                 f"{len(P)} [{_resolutions(bp)}], child candidates: {len(C)} [{_resolutions(bc)}]")
    depth_p = np.array([b.place for b in P])
    depth_c = np.array([b.place for b in C])
    ends_p = np.array([b.stage_end for b in P], dtype=bool)
    ends_c = np.array([b.stage_end for b in C], dtype=bool)
    levels_p, levels_c = _levels(P, count), _levels(C, count)
    options = dict(bonus=boundary_bonus(P, C),
                   ok_inner=inner_mask(ends_p, ends_c, ok, count, _last_block(P), _last_block(C)),
                   bonus_last=boundary_bonus(P, C, last=True),
                   flops_p=np.array([b.depth for b in P]), flops_c=np.array([b.depth for b in C]))
    notes = [f"{side}: {note}" for side, bg in (("parent", bp), ("child", bc)) for note in bg.notes]
    picked = choose_pairs(scores, ok, depth_p, depth_c, count, levels_p=levels_p, levels_c=levels_c, **options)
    if picked is None and options["ok_inner"] is not None:
        notes.append("the levels leave too few pairs of stage ends: inner points not only at stage ends")
        picked = choose_pairs(scores, ok, depth_p, depth_c, count, levels_p=levels_p, levels_c=levels_c,
                              **{**options, "ok_inner": None})
    if picked is None and (levels_p.active or levels_c.active):
        notes.append("the levels cannot all be kept in order with pairs that can mix: chosen without them")
        picked = choose_pairs(scores, ok, depth_p, depth_c, count, **options)
    assert picked is not None  # count <= longest chain
    notes += _level_notes(bp, P, [i for i, _ in picked], count, "parent") + \
        _level_notes(bc, C, [j for _, j in picked], count, "child")
    out = [_pair(P[i], C[j], float(scores[i, j]), _describe(P[i], C[j]),
                 None if cka is None else float(cka[i, j])) for i, j in picked]
    if notes and out:  # the choices the rules left to placement, and what the trunk left out
        out[0] = attrs.evolve(out[0], reason=out[0].reason + "; " + "; ".join(notes))
    return out


def _levels(blocks: Sequence[Block], count: int) -> Levels:
    """The level constraint of one model (:class:`~hkt_core.align.solve.Levels`): its candidates'
    trunk levels, none where the model has no repeated blocks."""
    tiers = np.array([b.tier for b in blocks], dtype=np.int64)
    levels = max((b.tiers for b in blocks), default=0)
    return Levels(tiers, levels, count)


def _level_notes(bg: BlockGraph, blocks: Sequence[Block], chosen: Sequence[int], count: int, side: str) -> list[str]:
    """Where the level rule left the choice to the placement: the levels left out (fewer points than
    levels), the levels given a second point (more points than levels)."""
    levels = max((b.tiers for b in blocks), default=0)
    if levels <= 1 or not chosen:
        return []
    names: dict[int, str] = {}
    for b in blocks:
        if b.tier and b.block_output:
            names.setdefault(b.tier, b.value_kind.describe().split(" ", 1)[-1])
    used = [blocks[i].tier for i in chosen]
    if count < levels:
        left = [names.get(t, str(t)) for t in range(1, levels + 1) if t not in used]
        return [f"{side}: {count} points for {levels} levels: {', '.join(left)} left out, by depth"] if left else []
    twice = sorted({t for t in used if used.count(t) > 1})
    if count > levels and twice:
        return [f"{side}: {count} points for {levels} levels: a second point at {', '.join(names.get(t, str(t)) for t in twice)}, by depth"]
    return []


def _last_block(blocks) -> int | None:
    indices = [i for i, b in enumerate(blocks) if b.block_output]
    return indices[-1] if indices else None
def _random(bp: BlockGraph, bc: BlockGraph, stages: int | None, seed: int) -> list[BlockPair]:
    """``stages - 1`` pairs that can mix, order-preserving, drawn uniformly with ``seed``
    (:func:`hkt_core.align.solve.random_pairs`); ``stages=None`` draws as many as the automatic rule."""
    P, C = bp.candidates, bc.candidates
    scores, same, ok = structural_matrix(P, C)
    most = longest_chain(ok)
    count = (min(auto_stage_count(bp, bc) - 1, max(longest_chain(same), 1)) if stages is None else stages - 1)
    if count > most:
        raise AlignmentError(f"stages={stages} needs {count} order-preserving mixing pairs that can mix, but "
                             f"these models allow at most {most} (stages <= {most + 1})")
    picked = random_pairs(ok, count, np.random.default_rng(seed))
    if picked is None:
        raise AlignmentError(f"no pair of {type(bp.traced.model).__name__} and {type(bc.traced.model).__name__} "
                             f"blocks can mix; give pairs by hand or state layouts")
    return [_pair(P[i], C[j], float(scores[i, j]), f"random (seed {seed}); " + _describe(P[i], C[j]))
            for i, j in picked]


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
    for k, (p, c) in enumerate(resolved, 1):
        blk_p, blk_c = bp.block(p), bc.block(c)
        problem = mixing_pair_problem(blk_p.value_kind, blk_c.value_kind)
        if problem:
            raise AlignmentError(f"manual pair {k} ({p!r}, {c!r}): {problem}")
        out.append(_pair(blk_p, blk_c, structural_score(blk_p, blk_c), "manual; " + _describe(blk_p, blk_c)))
    return out
