"""Choosing N order-preserving block pairs by dynamic programming.

Pairs are chosen among candidates sorted by topological position on each side; the k-th pair
must come strictly after the (k-1)-th in *both* networks. That makes the alignment
order-preserving, and it keeps the joint graph acyclic: a mixing point merges a parent value and a
child value (each stream reads the other's), so a cycle would need some pair j > i with p_j an
ancestor of p_i or c_j an ancestor of c_i, impossible when both topological positions increase.

Objective for N-1 mixing pairs: maximise the sum over k of ``score(p_k, c_k) + PLACEMENT_WEIGHT *
(1 - (|depth p_k - k/(N-1)| + |depth c_k - k/(N-1)|) / 2)``: the pair score, plus a preference for
spreading the mixing points evenly over both networks' depth (each side near the target, not only
their mean: a value at depth 0 paired with one at depth 1 is not "half-way") (the last sits next to the predictions, where the
paper's CIFAR pair mixes pooled features; the placement weighs as much as the pair score, so a
transformer whose values all have one token count still spreads its mixing points). Pairs that
cannot mix (:func:`hkt_core.trace.kinds.mixing_pair_problem`) are excluded. ``depth`` is a value's
placement depth (:attr:`hkt_core.align.blocks.Block.place`: its block position when the model has
repeated blocks, else its FLOP depth); :func:`inner_mask` keeps the points before the last on the
stage ends of a model of several stages.
Cost: O((N-1) x Kp x Kc) in numpy for Kp parent and Kc child candidates.
"""

from __future__ import annotations

import numpy as np

PLACEMENT_WEIGHT = 1.0
#: weight of the FLOP depth in the placement, next to block positions: a tie-break only
TIE_WEIGHT = 0.05


def _prefix_max(f: np.ndarray) -> np.ndarray:
    """M[i, j] = max f[:i, :j] (strictly before in both), -inf where empty."""
    m = np.maximum.accumulate(np.maximum.accumulate(f, axis=0), axis=1)
    out = np.full_like(f, -np.inf)
    out[1:, 1:] = m[:-1, :-1]
    return out


def longest_chain(ok: np.ndarray) -> int:
    """The most order-preserving compatible pairs that can be chosen at once.

    Longest-common-subsequence recurrence, one numpy pass per parent candidate:
    ``L[i, j] = max(L[i-1, j], L[i, j-1], L[i-1, j-1] + ok[i, j])``. O(Kp x Kc).
    """
    if ok.size == 0:
        return 0
    prev = np.zeros(ok.shape[1] + 1, dtype=np.int64)
    for row in ok:
        cur = np.maximum(prev[1:], prev[:-1] + row)
        prev = np.concatenate(([0], np.maximum.accumulate(cur)))
    return int(prev[-1])


def choose_pairs(scores: np.ndarray, ok: np.ndarray, depth_p: np.ndarray, depth_c: np.ndarray,
                 count: int, bonus: np.ndarray | None = None,
                 ok_inner: np.ndarray | None = None, bonus_last: np.ndarray | None = None,
                 flops_p: np.ndarray | None = None, flops_c: np.ndarray | None = None) -> list[tuple[int, int]] | None:
    """Indices of ``count`` order-preserving pairs maximising the objective, or None if impossible.

    ``bonus`` (stage ends, head inputs: :func:`hkt_core.align.score.boundary_bonus`) is added to a
    pair's gain in proportion to how near both sides are to the point's target depth, so a stage end
    is preferred at matching depth, not pulled away from it. ``ok_inner``, when given, replaces
    ``ok`` for every point but the last (the stage-end rule of :func:`inner_mask`), ``bonus_last``
    replaces ``bonus`` for the last point. ``flops_p`` / ``flops_c`` (FLOP depths, when ``depth_p`` /
    ``depth_c`` are block positions) break ties between values of one position (a model's last block
    and the final norm after it, two stage ends equally far from the target): ``TIE_WEIGHT`` times the
    pair's FLOP-depth similarity and its FLOP-depth nearness to the target are added."""
    if count == 0:
        return []
    tie = 0.0
    if flops_p is not None and flops_c is not None:
        tie = TIE_WEIGHT * (1.0 - np.abs(flops_p[:, None] - flops_c[None, :]))
    layers = []
    prev = None
    for k in range(1, count + 1):
        target = k / count
        off = (np.abs(depth_p - target)[:, None] + np.abs(depth_c - target)[None, :]) / 2.0
        near = 1.0 - off
        if flops_p is not None and flops_c is not None:
            near_flops = 1.0 - (np.abs(flops_p - target)[:, None] + np.abs(flops_c - target)[None, :]) / 2.0
            near_tie = tie + TIE_WEIGHT * near_flops
        else:
            near_tie = tie
        use = bonus_last if k == count and bonus_last is not None else bonus
        extra = 0.0 if use is None else use * near
        allowed = ok if ok_inner is None or k == count else ok_inner
        gain = np.where(allowed, scores + extra + PLACEMENT_WEIGHT * near + near_tie, -np.inf)
        f = gain if prev is None else gain + _prefix_max(prev)
        layers.append(f)
        prev = f
    last = layers[-1]
    if not np.isfinite(last).any():
        return None
    i, j = np.unravel_index(int(np.argmax(last)), last.shape)
    chosen = [(int(i), int(j))]
    for f in reversed(layers[:-1]):
        sub = f[:i, :j]
        i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
        chosen.append((int(i), int(j)))
    return chosen[::-1]


def inner_mask(stage_end_p: np.ndarray, stage_end_c: np.ndarray, ok: np.ndarray, count: int,
               last_p: int | None = None, last_c: int | None = None) -> np.ndarray | None:
    """Pairs allowed for the ``count - 1`` points before the last: a model of several stages (a stage
    end before a change of resolution or width, not only its last block ``last_p`` / ``last_c``)
    with at least that many stage ends mixes at stage ends only, the way a reader aligns a 2-stage
    network with a 4-stage one. None when neither model qualifies, or when the restriction leaves
    too few order-preserving pairs."""
    inner = count - 1
    if inner <= 0:
        return None

    def allowed(ends: np.ndarray, last: int | None) -> np.ndarray:
        staged = int(ends.sum()) - int(last is not None and bool(ends[last])) >= 1
        return ends if staged and ends.sum() >= inner else np.ones_like(ends)

    rows, cols = allowed(stage_end_p, last_p), allowed(stage_end_c, last_c)
    if rows.all() and cols.all():
        return None
    mask = ok & rows[:, None] & cols[None, :]
    return mask if longest_chain(mask) >= inner else None
def random_pairs(ok: np.ndarray, count: int, rng: np.random.Generator) -> list[tuple[int, int]] | None:
    """``count`` order-preserving pairs drawn uniformly among all chains of pairs ``ok`` allows (the
    random alignment control), or None if there is none.

    ``N_k[i, j]``, the number of chains of ``k`` pairs ending at ``(i, j)``, is ``ok[i, j]`` times the
    sum of ``N_{k-1}`` strictly before ``(i, j)`` in both networks; the last pair is drawn in
    proportion to ``N_count``, each earlier one in proportion to ``N_{k-1}`` before the pair after it.
    Each layer is rescaled to a maximum of 1 (the draw only needs ratios within a layer)."""
    if count == 0:
        return []
    allowed = ok.astype(np.float64)
    layers = []
    prev = None
    for _ in range(count):
        if prev is None:
            f = allowed.copy()
        else:
            before = np.zeros_like(prev)
            before[1:, 1:] = np.cumsum(np.cumsum(prev, axis=0), axis=1)[:-1, :-1]
            f = allowed * before
        top = f.max() if f.size else 0.0
        if top <= 0:
            return None
        f = f / top
        layers.append(f)
        prev = f

    def draw(weights: np.ndarray) -> tuple[int, int]:
        flat = weights.ravel()
        k = int(rng.choice(flat.size, p=flat / flat.sum()))
        return tuple(int(v) for v in np.unravel_index(k, weights.shape))

    i, j = draw(layers[-1])
    chosen = [(i, j)]
    for f in reversed(layers[:-1]):
        i, j = draw(f[:i, :j])
        chosen.append((i, j))
    return chosen[::-1]
