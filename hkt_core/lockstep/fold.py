"""BatchNorm folded into the preceding convolution, for the frozen parent only.

A frozen parent always runs in eval mode, where ``BatchNorm(conv(x))`` is one affine map per
channel after the convolution: ``scale = gamma / sqrt(running_var + eps)``, so the pair equals a
single convolution with weight ``W * scale`` and bias ``(b - running_mean) * scale + beta``.
Folding saves one full pass over every normalised activation (and its backward, where gradients
flow through the parent).

The fold works on a traced graph module's *own* module tree (:func:`fold_batchnorm`): the folded
convolutions are new modules with new tensors (computed in float64, stored in the convolution's
dtype), and each BatchNorm is replaced by :class:`torch.nn.Identity` in that tree. The model the
graph was traced from, its parameters, buffers and state dict are untouched, and every node keeps
its name. A pair is folded only where that changes no value anyone can name: the convolution's
only reader is the BatchNorm, neither module is called twice, and the convolution's node is not
one the caller keeps (a mixing point reads it).

Outputs agree with the unfolded network to float32 rounding; ``train.fold_parent_bn`` (on by
default, off for runs recorded before it existed) is part of a run's identity.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Collection

import torch
from torch import fx, nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def folded_conv(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A new convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (neither is modified)."""
    dtype = conv.weight.dtype
    with torch.no_grad():
        scale = bn.weight.double() if bn.weight is not None else torch.ones_like(bn.running_var, dtype=torch.float64)
        scale = scale / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() if bn.bias is not None else torch.zeros_like(scale)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        new = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                         padding_mode=conv.padding_mode, device=conv.weight.device, dtype=dtype)
        new.weight.copy_(weight.to(dtype))
        new.bias.copy_(((bias - bn.running_mean.double()) * scale + shift).to(dtype))
    new.requires_grad_(False)
    return new.eval()


def foldable_pairs(gm: fx.GraphModule, keep: Collection[fx.Node] = ()) -> list[tuple[fx.Node, fx.Node]]:
    """The ``(conv node, batchnorm node)`` pairs of ``gm`` that :func:`fold_batchnorm` folds."""
    calls = Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")
    keep = set(keep)
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or type(gm.get_submodule(str(node.target))) not in _NORMS:
            continue
        bn = gm.get_submodule(str(node.target))
        source = node.args[0] if node.args else None
        if (not isinstance(source, fx.Node) or source.op != "call_module" or source in keep
                or len(node.args) != 1 or node.kwargs or len(source.users) != 1
                or calls[str(node.target)] != 1 or calls[str(source.target)] != 1):
            continue
        conv = gm.get_submodule(str(source.target))
        if (not isinstance(conv, _CONVS) or not bn.track_running_stats or bn.running_mean is None
                or conv.out_channels != bn.num_features):
            continue
        pairs.append((source, node))
    return pairs


def _replace(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    owner, _, leaf = target.rpartition(".")
    setattr(gm.get_submodule(owner) if owner else gm, leaf, module)


def fold_batchnorm(gm: fx.GraphModule, keep: Collection[fx.Node] = ()) -> list[nn.Module]:
    """Fold every foldable BatchNorm of ``gm`` into its convolution, in ``gm``'s own module tree.

    ``gm`` must be a graph module whose containers are its own (what ``torch.fx`` builds: the leaf
    modules are shared with the traced model, the containers are not), so only ``gm`` changes.
    Returns the new folded convolutions (a caller moving ``gm``'s model to another device or
    dtype moves these too)."""
    new = []
    for conv_node, bn_node in foldable_pairs(gm, keep):
        conv, bn = gm.get_submodule(str(conv_node.target)), gm.get_submodule(str(bn_node.target))
        fused = folded_conv(conv, bn)
        fused._hkt_folded = True
        fused._hkt_source = (conv, bn)   # a tuple: not registered as sub-modules
        _replace(gm, str(conv_node.target), fused)
        _replace(gm, str(bn_node.target), nn.Identity())
        new.append(fused)
    return new


class _FoldTracer(fx.Tracer):
    """Traces through every module that holds a BatchNorm; anything without one stays a leaf
    (so a shortcut with shape-dependent Python control flow does not stop the trace)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _NORMS + _CONVS):
            return True
        return not any(isinstance(sub, _NORMS) for sub in m.modules()) or super().is_leaf_module(m, module_qualified_name)


def _has_norm(module: nn.Module) -> bool:
    return any(isinstance(sub, _NORMS) for sub in module.modules())


def folded_copy(model: nn.Module) -> tuple[nn.Module, int]:
    """``model`` with its BatchNorms folded, as a new module sharing every unfolded parameter and
    buffer with it, and the number of BatchNorms folded (``model`` itself when none is).

    The model is traced with :class:`torch.fx`; where a part cannot be traced, its children are
    folded one by one in a shallow copy of it."""
    if not _has_norm(model) or isinstance(model, _NORMS):
        return model, 0
    try:
        tracer = _FoldTracer()
        graph = tracer.trace(model)
        gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    except Exception:   # untraceable: fold inside each child
        folded: dict[str, nn.Module] = {}
        count = 0
        for name, child in model.named_children():
            new, k = folded_copy(child)
            if k:
                folded[name], count = new, count + k
        if not count:
            return model, 0
        shell = copy.copy(model)
        shell._modules = {**model._modules, **folded}
        shell._parameters, shell._buffers = dict(model._parameters), dict(model._buffers)
        return shell, count
    new = fold_batchnorm(gm)
    if not new:
        return model, 0
    gm.train(model.training)
    return gm, len(new)


def refold(folded: list[nn.Module]) -> None:
    """Recompute folded convolutions in place from their source convolution and BatchNorm (after
    the source model's weights were loaded anew)."""
    for module in folded:
        conv, bn = module._hkt_source
        fresh = folded_conv(conv, bn)
        with torch.no_grad():
            module.weight.copy_(fresh.weight)
            module.bias.copy_(fresh.bias)


def keep_fresh(model: nn.Module, folded: list[nn.Module]) -> None:
    """Refold ``folded`` whenever ``model``'s state dict is loaded (directly or through a module
    holding it): the fold is a function of the weights, never a stale snapshot."""
    if folded:
        model.register_load_state_dict_post_hook(lambda module, incompatible: refold(folded))


def folded_parent(model: nn.Module) -> nn.Module:
    """A copy of the frozen ``model`` with its BatchNorms folded (eval mode), sharing every
    unfolded parameter with it; ``model`` itself when it has nothing to fold. Loading new weights
    into ``model`` refolds the copy (:func:`keep_fresh`)."""
    new, count = folded_copy(model)
    if not count:
        return model
    keep_fresh(model, _folded_modules(new))
    return new.eval()


def _folded_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if getattr(m, "_hkt_folded", False)]


def fold_lockstep_parent(graph, keep: Collection[fx.Node] = ()) -> list[nn.Module]:
    """:func:`fold_batchnorm` on a :class:`hkt_core.lockstep.LockstepGraph`'s own graph module,
    with the graph's module lookup brought up to date."""
    new = fold_batchnorm(graph.gm, keep)
    # opaque blocks (an adapter's leaf modules) are folded inside, each replaced by a folded copy
    for node in graph.nodes:
        if node.op == "call_module":
            module = graph.gm.get_submodule(str(node.target))
            if isinstance(module, _NORMS + _CONVS) or getattr(module, "_hkt_folded", False):
                continue
            copy_, count = folded_copy(module)
            if count:
                _replace(graph.gm, str(node.target), copy_)
                new += _folded_modules(copy_)
    if new:
        graph.modules = {n: graph.gm.get_submodule(str(n.target)) for n in graph.nodes if n.op == "call_module"}
    return new

__all__ = ["fold_batchnorm", "fold_lockstep_parent", "foldable_pairs", "folded_conv", "folded_copy", "folded_parent"]
