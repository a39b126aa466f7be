"""The alignment record: which parent block feeds which child block, and why.

An :class:`Alignment` is what the Family consumes. It is plain data (names and shapes), so it
survives JSON and a pair card: a Family reads it back and resolves the names on its own trace
(:func:`hkt_core.align.resolve`).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ..errors import AlignmentError
from ..trace.kinds import KINDS

#: Version of the JSON layout written by :meth:`Alignment.to_json`.
FORMAT_VERSION = 1


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise AlignmentError(f"a shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def _name(instance, attribute, value) -> None:
    if not isinstance(value, str) or not value:
        raise AlignmentError(f"BlockPair.{attribute.name} must be a non-empty node name, got {value!r}")


def _score(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise AlignmentError(f"BlockPair.score must be a number in [0, 1], got {value!r}")


def _kind(instance, attribute, value) -> None:
    if value not in ("", *KINDS):
        raise AlignmentError(f"BlockPair.{attribute.name} = {value!r} must be one of {', '.join(KINDS)}")


def _kind_of_shape(shape: tuple[int, ...]) -> str:
    return "vector" if len(shape) <= 2 else "map"


@attrs.frozen
class BlockPair:
    """One aligned pair: a parent value and a child value (names per the naming rule)."""

    parent: str = attrs.field(validator=_name)
    child: str = attrs.field(validator=_name)
    parent_shape: tuple[int, ...] = attrs.field(converter=_shape)
    child_shape: tuple[int, ...] = attrs.field(converter=_shape)
    score: float = attrs.field(validator=_score, converter=lambda v: float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
    reason: str = ""
    #: ``map``, ``tokens`` or ``vector`` (:mod:`hkt_core.trace.kinds`); read from the shape when not given
    parent_kind: str = attrs.field(default="", validator=_kind)
    child_kind: str = attrs.field(default="", validator=_kind)
    #: linear CKA of the two values on the calibration samples (``method="activation"``)
    cka: float | None = attrs.field(default=None, validator=attrs.validators.optional(_score))

    def __attrs_post_init__(self) -> None:
        for side in ("parent", "child"):
            if not getattr(self, f"{side}_kind"):
                object.__setattr__(self, f"{side}_kind", _kind_of_shape(getattr(self, f"{side}_shape")))

    def to_dict(self) -> dict[str, Any]:
        data = {"parent": self.parent, "child": self.child, "parent_shape": list(self.parent_shape),
                "child_shape": list(self.child_shape), "parent_kind": self.parent_kind,
                "child_kind": self.child_kind, "score": round(self.score, 6), "reason": self.reason}
        if self.cka is not None:
            data["cka"] = round(self.cka, 6)
        return data


def _pairs(value: Any) -> tuple[BlockPair, ...]:
    pairs = tuple(value)
    if len(pairs) < 1 or not all(isinstance(p, BlockPair) for p in pairs):
        raise AlignmentError("Alignment.pairs must be a non-empty sequence of BlockPair "
                             "(the last pair is the two models' predictions)")
    return pairs


def _input_shapes(value: Any) -> tuple[tuple[int, ...], ...]:
    shapes = tuple(_shape(s) for s in value)
    if not shapes:
        raise AlignmentError("Alignment.input_shapes must list at least one example input shape")
    return shapes


@attrs.frozen
class Alignment:
    """N aligned block pairs in order; mixing happens at the first N-1, the last is the predictions."""

    pairs: tuple[BlockPair, ...] = attrs.field(converter=_pairs)
    input_shapes: tuple[tuple[int, ...], ...] = attrs.field(converter=_input_shapes)
    method: str = "structural"
    #: where the activation method's samples came from (``method="activation"``)
    calibration: dict[str, Any] | None = attrs.field(default=None, hash=False)
    #: layouts stated for values whose kind the graph reading got wrong; a Family built from this
    #: alignment applies them too, so it reads every value as the alignment did
    layouts: dict[str, str] = attrs.field(factory=dict, hash=False, converter=lambda v: dict(v or {}))
    #: the two :class:`hkt_core.trace.TracedModel` (parent, child) the alignment was computed on, when
    #: it was (not stored in JSON); a Family built from this alignment reuses them instead of tracing again
    traced: tuple[Any, Any] | None = attrs.field(default=None, eq=False, repr=False)
    #: ``method="random"``: the seed the mixing points were drawn with (the control is reproducible)
    seed: int | None = None

    @property
    def stages(self) -> int:
        """nHKT: the number of aligned pairs, predictions included."""
        return len(self.pairs)

    @property
    def mixing_pairs(self) -> tuple[BlockPair, ...]:
        return self.pairs[:-1]

    @property
    def prediction_pair(self) -> BlockPair:
        return self.pairs[-1]

    def to_dict(self) -> dict[str, Any]:
        data = {"version": FORMAT_VERSION, "method": self.method,
                "input_shapes": [list(s) for s in self.input_shapes]}
        if self.calibration is not None:
            data["calibration"] = dict(self.calibration)
        if self.layouts:
            data["layouts"] = dict(self.layouts)
        if self.seed is not None:
            data["seed"] = self.seed
        data["pairs"] = [p.to_dict() for p in self.pairs]
        return data

    def to_json(self) -> str:
        """JSON text, one pair per line (``Alignment.from_json`` reads it back)."""
        data = self.to_dict()
        pairs = ",\n".join(f"    {json.dumps(p)}" for p in data["pairs"])
        calibration = "".join(f'  "{key}": {json.dumps(data[key])},\n' for key in ("calibration", "layouts", "seed")
                              if key in data)
        return (f'{{\n  "version": {data["version"]},\n  "method": {json.dumps(data["method"])},\n'
                f'  "input_shapes": {json.dumps(data["input_shapes"])},\n{calibration}  "pairs": [\n{pairs}\n  ]\n}}')

    @classmethod
    def from_dict(cls, data: Any) -> "Alignment":
        if not isinstance(data, dict):
            raise AlignmentError(f"an alignment is a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise AlignmentError(f"alignment version {version!r} is not supported; this hkt reads version "
                                 f"{FORMAT_VERSION}")
        raw_pairs = data.get("pairs")
        if not isinstance(raw_pairs, list) or not raw_pairs:
            raise AlignmentError("alignment JSON needs a non-empty list 'pairs'")
        pairs = []
        for i, item in enumerate(raw_pairs):
            missing = [k for k in ("parent", "child", "parent_shape", "child_shape", "score")
                       if not isinstance(item, dict) or k not in item]
            if missing:
                raise AlignmentError(f"alignment pair {i} is missing {', '.join(missing)}")
            pairs.append(BlockPair(item["parent"], item["child"], item["parent_shape"], item["child_shape"],
                                   item["score"], item.get("reason", ""), parent_kind=item.get("parent_kind", ""),
                                   child_kind=item.get("child_kind", ""), cka=item.get("cka")))
        shapes = data.get("input_shapes")
        if shapes is None:
            raise AlignmentError("alignment JSON needs 'input_shapes' (the example input shapes)")
        calibration = data.get("calibration")
        if calibration is not None and not isinstance(calibration, dict):
            raise AlignmentError("alignment 'calibration' must be an object")
        layouts = data.get("layouts") or {}
        if not isinstance(layouts, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in layouts.items()):
            raise AlignmentError("alignment 'layouts' must map node names to layouts, e.g. {\"enc\": \"tokens\"}")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise AlignmentError(f"alignment 'seed' must be an integer (the random control's), got {seed!r}")
        return cls(pairs=pairs, input_shapes=shapes, method=str(data.get("method", "structural")),
                   calibration=calibration, layouts=layouts, seed=seed)

    @classmethod
    def from_json(cls, text: str) -> "Alignment":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AlignmentError(f"not valid alignment JSON: {exc}") from None
        return cls.from_dict(data)

    def table(self) -> str:
        """A readable table: one row per pair, mixing points first, predictions last."""
        with_cka = any(p.cka is not None for p in self.pairs)
        rows = [("#", "parent", "kind", "shape", "child", "kind", "shape", "score",
                 *(("cka",) if with_cka else ()), "reason")]
        for i, p in enumerate(self.pairs, 1):
            tag = f"{i}" if i < len(self.pairs) else f"{i} (out)"
            cka = ((f"{p.cka:.3f}" if p.cka is not None else "-"),) if with_cka else ()
            rows.append((tag, p.parent, p.parent_kind, "x".join(map(str, p.parent_shape)), p.child, p.child_kind,
                         "x".join(map(str, p.child_shape)), f"{p.score:.3f}", *cka, p.reason))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
        return "\n".join(line.rstrip() for line in lines)
