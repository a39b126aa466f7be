"""InherNet for hkt: build the child from the parent's own weights.

Each ``nn.Linear`` / ``nn.Conv2d`` (groups=1) of the parent is replaced by one shared low-rank down
projection initialised from its SVD, ``M`` up heads and a softmax gate that mixes them. At
initialisation every head is the same balanced factor, so the layer computes exactly the
rank-``r`` truncation of the parent's weight; fine-tuning lets the heads specialise::

    from hkt_inhernet import CompressionPolicy, compress_model

    child, report = compress_model(parent, CompressionPolicy(budget=0.25))
    print(report.format())

Public names: :func:`compress_layer`, :func:`compress_model`, :func:`restore`,
:class:`CompressionPolicy`, :class:`CompressionReport`, :class:`LayerReport`,
:class:`InheritedLinear`, :class:`InheritedConv2d`, :class:`InheritMethod` (method ``inherit``),
and the command ``hkt inhernet report``.
"""

from __future__ import annotations

from .compress import CompressionReport, LayerReport, compress_model, compressible_layers, restore
from .layer import (InheritedConv2d, InheritedLayer, InheritedLinear, compress_layer,
                    inherited_parameter_count, singular_values)
from .policy import CompressionPolicy
from .ranks import kept_energy, rank_for_energy


def __getattr__(name: str):
    if name == "InheritMethod":  # imports the training protocol only when asked for
        from .method import InheritMethod

        return InheritMethod
    raise AttributeError(f"module 'hkt_inhernet' has no attribute {name!r}")


__all__ = [
    "CompressionPolicy", "CompressionReport", "InheritMethod", "InheritedConv2d", "InheritedLayer",
    "InheritedLinear", "LayerReport", "compress_layer", "compress_model", "compressible_layers",
    "inherited_parameter_count", "kept_energy", "rank_for_energy", "restore", "singular_values",
]
