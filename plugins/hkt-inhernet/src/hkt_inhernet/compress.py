"""Compressing a whole model: pick layers, choose ranks, replace them, report what happened.

:func:`compress_model` never changes the model it is given: it works on a deep copy, so a parent
stays intact while its compressed child is built. Layers are visited in module registration
order (``model.named_modules()``): "the first convolution" and "the classifier" (the last
``nn.Linear``/``nn.Conv2d``) are read in that order, which is the definition order of nearly every
network. :func:`restore` rebuilds a compressed architecture from a state dict alone, so a
checkpoint of a compressed child can be loaded into a fresh copy of the model it came from.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import nn

from hkt_core import CheckpointError, ConfigError

from .layer import (COMPRESSIBLE, InheritedLayer, _from_svd, compress_layer, inherited_parameter_count,
                    max_profitable_rank, weight_matrix)
from .layer import svd as svd_of
from .policy import CompressionPolicy
from .ranks import BudgetLayer, allocate_budget, kept_energy, rank_for_energy


@attrs.frozen
class LayerReport:
    """One candidate layer: its rank (None when left dense, with the reason in ``note``)."""

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    full_rank: int
    rank: int | None
    heads: int | None
    kept_energy: float
    params_before: int
    params_after: int
    note: str = ""

    @property
    def compressed(self) -> bool:
        return self.rank is not None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class CompressionReport:
    """Per-layer outcome and whole-model parameter counts (every parameter, biases included)."""

    layers: tuple[LayerReport, ...]
    params_before: int
    params_after: int
    heads: int
    policy: str

    @property
    def ratio(self) -> float:
        """Parameters after / before."""
        return self.params_after / self.params_before if self.params_before else 1.0

    def ranks(self) -> dict[str, int]:
        """``{layer name: rank}`` of the compressed layers."""
        return {row.name: row.rank for row in self.layers if row.rank is not None}

    def as_policy(self) -> CompressionPolicy:
        """A policy that rebuilds exactly this architecture from a fresh copy of the model."""
        return CompressionPolicy(ranks=self.ranks(), heads=self.heads)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "heads": self.heads, "params_before": self.params_before,
                "params_after": self.params_after, "ratio": self.ratio,
                "layers": [row.to_dict() for row in self.layers]}

    def format(self) -> str:
        """A plain-text table, one row per candidate layer, then the totals."""
        header = ("layer", "kind", "weight", "rank", "energy", "params", "note")
        rows = [header]
        for row in self.layers:
            rank = f"{row.rank}/{row.full_rank}" if row.rank is not None else f"-/{row.full_rank}"
            energy = f"{row.kept_energy:.4f}" if row.rank is not None else "1"
            params = f"{row.params_before:,} -> {row.params_after:,}"
            rows.append((row.name, row.kind, "x".join(map(str, row.weight_shape)), rank, energy,
                         params, row.note))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip() for r in rows]
        compressed = sum(row.compressed for row in self.layers)
        lines.append("")
        lines.append(f"{self.policy}: {compressed} of {len(self.layers)} layers compressed; "
                     f"{self.params_before:,} -> {self.params_after:,} parameters "
                     f"({100.0 * self.ratio:.1f}%)")
        return "\n".join(lines)


def compressible_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, layer)`` of every ``nn.Linear``/``nn.Conv2d`` in module order.

    Layers inside an already inherited layer, and the projections ``nn.MultiheadAttention`` reads
    directly (it never calls their ``forward``), are not candidates.
    """
    found: list[tuple[str, nn.Module]] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, InheritedLayer):
                continue
            if isinstance(child, COMPRESSIBLE) and not isinstance(module, nn.MultiheadAttention):
                found.append((name, child))
            visit(child, name)

    visit(model, "")
    return found


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _skip_reason(name: str, layer: nn.Module, first_conv: str | None, last: str,
                 policy: CompressionPolicy) -> str | None:
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        return f"skipped: grouped convolution (groups={layer.groups})"
    if isinstance(layer.weight, nn.parameter.UninitializedParameter):
        return "skipped: uninitialised lazy layer"
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in policy.exclude):
        return "skipped: excluded"
    if policy.skip_first_conv and name == first_conv:
        return "skipped: first convolution"
    if policy.skip_classifier and name == last:
        return "skipped: classifier"
    return None


def compress_model(model: nn.Module, policy: CompressionPolicy) -> tuple[nn.Module, CompressionReport]:
    """A compressed deep copy of ``model`` and the per-layer report. ``model`` is left untouched.

    Raises :class:`~hkt_core.errors.ConfigError` when a plan names an unknown or incompressible
    layer, or a budget cannot be met.
    """
    if not isinstance(policy, CompressionPolicy):
        raise ConfigError(f"policy must be a CompressionPolicy, got {type(policy).__name__}")
    heads = policy.heads
    candidates = compressible_layers(model)
    by_name = dict(candidates)
    svds: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def svd(name: str):
        if name not in svds:
            svds[name] = svd_of(weight_matrix(by_name[name]))
        return svds[name]

    notes: dict[str, str] = {}
    ranks: dict[str, int] = {}
    if policy.ranks is not None:
        unknown = sorted(set(policy.ranks) - set(by_name))
        if unknown:
            raise ConfigError(f"the plan names layers the model does not have as nn.Linear/nn.Conv2d: "
                              f"{', '.join(unknown)}; compressible layers: "
                              f"{', '.join(by_name) or 'none'}")
        for name, rank in policy.ranks.items():
            _check_planned(name, by_name[name], rank)
        ranks = dict(policy.ranks)
        notes = {name: "kept dense: not in the plan" for name in by_name if name not in ranks}
    else:
        conv_names = [name for name, layer in candidates if isinstance(layer, nn.Conv2d)]
        first_conv = conv_names[0] if conv_names else None
        last = candidates[-1][0] if candidates else ""
        eligible: list[str] = []
        for name, layer in candidates:
            reason = _skip_reason(name, layer, first_conv, last, policy)
            if reason is None:
                d_out, d_in = weight_matrix(layer).shape
                if policy.skip_unprofitable and max_profitable_rank(d_in, d_out, heads) < 1:
                    reason = "skipped: no rank saves parameters"
            if reason is None:
                eligible.append(name)
            else:
                notes[name] = reason
        ranks = _choose_ranks(model, policy, eligible, by_name, svd, notes)

    new_model = copy.deepcopy(model)
    for name, rank in ranks.items():
        u, s, vh = svd(name)
        _replace(new_model, name, _from_svd(new_model.get_submodule(name), u, s, vh, rank, heads))

    rows = []
    for name, layer in candidates:
        d_out, d_in = weight_matrix(layer).shape
        before = _count(layer)
        shape = tuple(layer.weight.shape)
        kind = "linear" if isinstance(layer, nn.Linear) else "conv2d"
        if name in ranks:
            rank = ranks[name]
            _, s, _ = svd(name)
            after = inherited_parameter_count(d_in, d_out, rank, heads, layer.bias is not None)
            rows.append(LayerReport(name, kind, shape, min(d_in, d_out), rank, heads,
                                    kept_energy(s, rank), before, after, notes.get(name, "")))
        else:
            rows.append(LayerReport(name, kind, shape, min(d_in, d_out), None, None, 1.0, before, before,
                                    notes.get(name, "kept dense")))
    report = CompressionReport(tuple(rows), _count(model), _count(new_model), heads, policy.describe())
    return new_model, report


def _check_planned(name: str, layer: nn.Module, rank: int) -> None:
    """Refuse a planned rank the layer cannot take, naming the layer."""
    try:
        d_out, d_in = weight_matrix(layer).shape
    except ConfigError as exc:
        raise ConfigError(f"layer {name!r}: {exc}") from None
    if rank > min(d_out, d_in):
        raise ConfigError(f"layer {name!r}: rank {rank} exceeds its full rank {min(d_out, d_in)}")


def _choose_ranks(model: nn.Module, policy: CompressionPolicy, eligible: list[str],
                  by_name: Mapping[str, nn.Module], svd, notes: dict[str, str]) -> dict[str, int]:
    heads = policy.heads
    ranks: dict[str, int] = {}
    limits: dict[str, int] = {}
    for name in eligible:
        d_out, d_in = weight_matrix(by_name[name]).shape
        full = min(d_in, d_out)
        limits[name] = max_profitable_rank(d_in, d_out, heads) if policy.skip_unprofitable else full
    if policy.rule == "budget":
        total = _count(model)
        fixed = total - sum(by_name[name].weight.numel() + _bias_count(by_name[name]) for name in eligible)
        layers = [BudgetLayer(name, svd(name)[1], weight_matrix(by_name[name]).shape[1],
                              weight_matrix(by_name[name]).shape[0], limits[name],
                              by_name[name].bias is not None) for name in eligible]
        target = int(policy.budget * total)
        return allocate_budget(layers, fixed, target, heads)
    for name in eligible:
        full = min(weight_matrix(by_name[name]).shape)
        if policy.rule == "rank":
            wanted = min(policy.rank, full)
        else:
            wanted = rank_for_energy(svd(name)[1], policy.energy)
        if wanted > limits[name]:
            notes[name] = (f"skipped: rank {wanted} would not save parameters "
                           f"(at most {limits[name]} does)")
            continue
        ranks[name] = wanted
    return ranks


def _bias_count(layer: nn.Module) -> int:
    return layer.bias.numel() if layer.bias is not None else 0


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def restore(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """A compressed copy of ``model`` shaped after ``state_dict`` (as saved from a compressed model),
    with those weights loaded.

    Compressed layers are recognised by their ``<name>.heads`` entry (``M x d_out x r``); the
    rest must match ``model`` exactly. Raises :class:`~hkt_core.errors.CheckpointError` when the
    state dict does not fit.
    """
    plan: dict[str, tuple[int, int]] = {}
    by_name = dict(compressible_layers(model))
    for key, tensor in state_dict.items():
        if not key.endswith(".heads") or f"{key[:-len('.heads')]}.down.weight" not in state_dict:
            continue
        name = key[: -len(".heads")]
        if name not in by_name:
            raise CheckpointError(f"the state dict compresses layer {name!r}, which the model does not "
                                  "have as nn.Linear/nn.Conv2d")
        if tensor.dim() != 3:
            raise CheckpointError(f"{key}: expected heads of shape (M, d_out, r), got {tuple(tensor.shape)}")
        plan[name] = (int(tensor.shape[2]), int(tensor.shape[0]))
    new_model = copy.deepcopy(model)
    for name, (rank, heads) in plan.items():
        try:
            _replace(new_model, name, compress_layer(new_model.get_submodule(name), rank, heads))
        except ConfigError as exc:
            raise CheckpointError(f"layer {name!r}: {exc}") from None
    try:
        new_model.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the state dict does not fit the compressed model: {exc}") from None
    return new_model
