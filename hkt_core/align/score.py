"""The alignment score of a (parent block, child block) pair, in [0, 1].

Structural score (``method="structural"``)::

    score = 0.6 * (1 - |depth_p - depth_c|)            similar relative depth
          + 0.2 * role_match                           compatible roles
          + 0.2 * (strength_p + strength_c) / 2        both are natural hand-off points

``depth`` is :attr:`Block.place`: the block position when the model has repeated blocks, else
the FLOP depth. ``role_match`` is the share of agreeing role signs among {cut point, module level (top-level /
second-level / inner), resolution-or-width change}; ``strength`` is the share of those signs a
block shows (:attr:`Block.strength`).

Which pairs are candidates at all is :func:`hkt_core.trace.kinds.mixing_pair_problem`, the rule the
Family applies too (:func:`compatible`): any two kinds a transfer connects. Pairs of the same kind
and resolution are *matched* (:func:`matched`); the solver uses only matched pairs when they allow
the number of mixing points asked for, and otherwise every compatible pair, whose score then
loses ``RESOLUTION_WEIGHT * (1 - resolution similarity)``: the ratio of the smaller to the larger
number of positions (spatial positions of a map, tokens without the class token, 1 for a vector),
so a 4x4 map meets 16 tokens before it meets 64, and a vector meets the deepest values.

Activation score (``method="activation"``): ``(structural + CKA) / 2`` where CKA is linear
centered kernel alignment between the two blocks' activations on a calibration batch
(Kornblith et al. 2019): ``CKA = <Kx, Ky>_F / (||Kx||_F ||Ky||_F)`` with ``K = Xc Xc^T`` the
centered Gram matrix of the batch's flattened activations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..trace.kinds import mixing_pair_problem
from .blocks import Block

DEPTH_WEIGHT, ROLE_WEIGHT, STRENGTH_WEIGHT = 0.6, 0.2, 0.2
RESOLUTION_WEIGHT, UNMATCHED_PENALTY = 0.3, 0.1
#: bonus of a pair whose two values are both stage ends, or both the features their heads read
STAGE_END_WEIGHT, HEAD_INPUT_WEIGHT = 0.15, 0.3
#: The calibration batch linear CKA needs at the least (a Gram matrix of fewer samples is noise).
MIN_CALIBRATION = 8


def compatible(p: Block, c: Block) -> bool:
    """The two values can be a mixing point (:func:`hkt_core.trace.kinds.mixing_pair_problem`)."""
    return mixing_pair_problem(p.value_kind, c.value_kind) is None


def matched(p: Block, c: Block) -> bool:
    """Same kind and same resolution: the transfer only projects features."""
    return p.kind == c.kind and p.resolution == c.resolution


def resolution_similarity(p: Block, c: Block) -> float:
    a, b = p.value_kind.positions, c.value_kind.positions
    return min(a, b) / max(a, b)


def role_match(p: Block, c: Block) -> float:
    return (float(p.cut == c.cut) + float(p.level == c.level) + float(p.change == c.change)) / 3.0


def resolution_penalty(p: Block, c: Block) -> float:
    """What an unmatched pair loses; nothing for the two features the heads read (the natural last
    mixing point whatever their kinds: pooled vectors, a final norm's tokens, a 1x1 map)."""
    if matched(p, c) or (p.head_input and c.head_input):
        return 0.0
    return UNMATCHED_PENALTY + RESOLUTION_WEIGHT * (1.0 - resolution_similarity(p, c))


def structural_score(p: Block, c: Block) -> float:
    value = (DEPTH_WEIGHT * (1.0 - abs(p.place - c.place)) + ROLE_WEIGHT * role_match(p, c)
             + STRENGTH_WEIGHT * (p.strength + c.strength) / 2.0)
    value -= resolution_penalty(p, c)
    return float(min(1.0, max(0.0, value)))


def boundary_bonus(parent: Sequence[Block], child: Sequence[Block], last: bool = False) -> np.ndarray:
    """Placement preference added to the pair score by the solver: ``STAGE_END_WEIGHT`` when both
    are stage ends, ``HEAD_INPUT_WEIGHT`` when both are the features their heads read. For the last
    mixing point (``last``) only the head inputs count: there the last stage's output competes with
    the features the head reads, and the rule prefers the latter (docs/alignment.md, section 2)."""
    se_p = np.array([b.stage_end for b in parent], dtype=np.float64)
    se_c = np.array([b.stage_end for b in child], dtype=np.float64)
    hi_p = np.array([b.head_input for b in parent], dtype=np.float64)
    hi_c = np.array([b.head_input for b in child], dtype=np.float64)
    head = HEAD_INPUT_WEIGHT * hi_p[:, None] * hi_c[None, :]
    return head if last else STAGE_END_WEIGHT * se_p[:, None] * se_c[None, :] + head


def _features(blocks: Sequence[Block]) -> dict[str, np.ndarray]:
    return {
        "depth": np.array([b.place for b in blocks], dtype=np.float64),
        "cut": np.array([b.cut for b in blocks], dtype=bool),
        "level": np.array([b.level for b in blocks], dtype=np.int64),
        "change": np.array([b.change for b in blocks], dtype=bool),
        "strength": np.array([b.strength for b in blocks], dtype=np.float64),
    }


def structural_matrix(parent: Sequence[Block], child: Sequence[Block]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, matched, compatible) matrices of shape (len(parent), len(child)); same formula,
    vectorised (scores of unmatched pairs carry the resolution penalty)."""
    fp, fc = _features(parent), _features(child)
    depth = 1.0 - np.abs(fp["depth"][:, None] - fc["depth"][None, :])
    roles = ((fp["cut"][:, None] == fc["cut"][None, :]).astype(np.float64)
             + (fp["level"][:, None] == fc["level"][None, :])
             + (fp["change"][:, None] == fc["change"][None, :])) / 3.0
    strength = (fp["strength"][:, None] + fc["strength"][None, :]) / 2.0
    scores = np.clip(DEPTH_WEIGHT * depth + ROLE_WEIGHT * roles + STRENGTH_WEIGHT * strength, 0.0, 1.0)
    keys_p: dict[tuple, list[int]] = {}
    for i, b in enumerate(parent):
        keys_p.setdefault((b.kind, b.resolution), []).append(i)
    same = np.zeros((len(parent), len(child)), dtype=bool)
    for j, b in enumerate(child):
        rows = keys_p.get((b.kind, b.resolution))
        if rows:
            same[rows, j] = True
    ok = same.copy()
    for i, p in enumerate(parent):
        for j, c in enumerate(child):
            if not same[i, j]:
                ok[i, j] = compatible(p, c)
                scores[i, j] = max(0.0, scores[i, j] - resolution_penalty(p, c))
    return scores, same, ok


def centered_gram(x: torch.Tensor) -> np.ndarray:
    """Centered Gram matrix (n, n) of a batch of activations, float64."""
    flat = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    flat = flat - flat.mean(dim=0, keepdim=True)
    return (flat @ flat.T).numpy()


def cka_matrix(parent_grams: Sequence[np.ndarray], child_grams: Sequence[np.ndarray]) -> np.ndarray:
    """Linear CKA between every parent and child activation, from their centered Gram matrices."""
    def stack(grams):
        flat = np.stack([g.reshape(-1) for g in grams]) if grams else np.zeros((0, 1))
        norms = np.linalg.norm(flat, axis=1, keepdims=True)
        return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)

    return np.clip(stack(parent_grams) @ stack(child_grams).T, 0.0, 1.0)
