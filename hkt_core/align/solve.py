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
**Levels** (:attr:`hkt_core.align.blocks.Block.tier`: the runs of a trunk's block outputs with one
resolution, the features the head reads standing for the last) constrain the chain on each model
that has them (:class:`Levels`): with at least as many points as levels, every level gets a point
before any gets a second (the first point in the first level, each next one in the same level or
the next, the last in the last level); with fewer points than levels, no level gets two and the
last point is in the last level (the levels left out are the ones the placement puts no point near).
Cost: O((N-1) x Kp x Kc) in numpy for Kp parent and Kc child candidates (times the number of
pairs of levels, a handful, where levels constrain the chain).
"""

from __future__ import annotations

import attrs
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


@attrs.frozen
class Levels:
    """One model's trunk levels for the chain of ``count`` points (module docstring): ``tiers[i]`` is
    candidate i's level (1-based, non-decreasing in candidate order; 0 when the model has none)."""

    tiers: np.ndarray
    levels: int
    count: int

    @property
    def active(self) -> bool:
        return self.levels >= 1 and bool((self.tiers > 0).all())

    @property
    def cover(self) -> bool:
        """Every level gets a point (at least as many points as levels)."""
        return self.count >= self.levels

    def first(self) -> np.ndarray:
        return self.tiers == 1 if self.active and self.cover else np.ones(len(self.tiers), dtype=bool)

    def last(self) -> np.ndarray:
        return self.tiers == self.levels if self.active else np.ones(len(self.tiers), dtype=bool)

    def ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): the candidates a point at candidate i may follow are lo[i] <= i' < hi[i]."""
        n = len(self.tiers)
        idx = np.arange(n)
        if not self.active:
            return np.zeros(n, dtype=np.int64), idx
        start = {t: int(np.argmax(self.tiers == t)) for t in np.unique(self.tiers)}
        if self.cover:  # the same level or the one before
            lo = np.array([start.get(t - 1, start[t]) for t in self.tiers], dtype=np.int64)
            return lo, idx
        return np.zeros(n, dtype=np.int64), np.array([start[t] for t in self.tiers], dtype=np.int64)


def _range_max(f: np.ndarray, lp: np.ndarray, hp: np.ndarray, lc: np.ndarray, hc: np.ndarray) -> np.ndarray:
    """M[i, j] = max f[lp[i]:hp[i], lc[j]:hc[j]] (-inf where empty), one 2-D running maximum per
    pair of distinct lower bounds."""
    out = np.full_like(f, -np.inf)
    for a in np.unique(lp):
        rows = np.nonzero(lp == a)[0]
        for b in np.unique(lc):
            cols = np.nonzero(lc == b)[0]
            sub = f[a:, b:]
            if sub.size == 0:
                continue
            cm = np.maximum.accumulate(np.maximum.accumulate(sub, axis=0), axis=1)
            r, c = hp[rows] - 1 - a, hc[cols] - 1 - b
            rv, cv = rows[r >= 0], cols[c >= 0]
            if rv.size and cv.size:
                out[np.ix_(rv, cv)] = cm[np.ix_(r[r >= 0], c[c >= 0])]
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
                 flops_p: np.ndarray | None = None, flops_c: np.ndarray | None = None,
                 levels_p: Levels | None = None, levels_c: Levels | None = None) -> list[tuple[int, int]] | None:
    """Indices of ``count`` order-preserving pairs maximising the objective, or None if impossible.

    ``bonus`` (stage ends, head inputs: :func:`hkt_core.align.score.boundary_bonus`) is added to a
    pair's gain in proportion to how near both sides are to the point's target depth, so a stage end
    is preferred at matching depth, not pulled away from it. ``ok_inner``, when given, replaces
    ``ok`` for every point but the last (the stage-end rule of :func:`inner_mask`), ``bonus_last``
    replaces ``bonus`` for the last point. ``flops_p`` / ``flops_c`` (FLOP depths, when ``depth_p`` /
    ``depth_c`` are block positions) break ties between values of one position (a model's last block
    and the final norm after it, two stage ends equally far from the target): ``TIE_WEIGHT`` times the
    pair's FLOP-depth similarity and its FLOP-depth nearness to the target are added. ``levels_p``
    / ``levels_c`` constrain the chain to the models' levels (module docstring)."""
    if count == 0:
        return []
    constrained = (levels_p is not None and levels_p.active) or (levels_c is not None and levels_c.active)
    if constrained:
        n_p, n_c = scores.shape
        lp_ = levels_p if levels_p is not None else Levels(np.zeros(n_p, dtype=np.int64), 0, count)
        lc_ = levels_c if levels_c is not None else Levels(np.zeros(n_c, dtype=np.int64), 0, count)
        (lo_p, hi_p), (lo_c, hi_c) = lp_.ranges(), lc_.ranges()
        first = lp_.first()[:, None] & lc_.first()[None, :]
        final = lp_.last()[:, None] & lc_.last()[None, :]
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
        if constrained:
            allowed = allowed & (first if k == 1 else True) & (final if k == count else True)
        gain = np.where(allowed, scores + extra + PLACEMENT_WEIGHT * near + near_tie, -np.inf)
        if prev is None:
            f = gain
        else:
            f = gain + (_range_max(prev, lo_p, hi_p, lo_c, hi_c) if constrained else _prefix_max(prev))
        layers.append(f)
        prev = f
    last = layers[-1]
    if not np.isfinite(last).any():
        return None
    i, j = np.unravel_index(int(np.argmax(last)), last.shape)
    chosen = [(int(i), int(j))]
    for f in reversed(layers[:-1]):
        if constrained:
            a, b = int(lo_p[i]), int(lo_c[j])
            sub = f[a:hi_p[i], b:hi_c[j]]
            di, dj = np.unravel_index(int(np.argmax(sub)), sub.shape)
            i, j = a + di, b + dj
        else:
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
