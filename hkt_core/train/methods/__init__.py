"""The built-in training methods, one file each, registered where they are defined (``@method``):

- ``parent``, ``baseline`` (:mod:`.baseline`): the task loss alone;
- ``kd`` (:mod:`.kd`): Hinton distillation; ``dkd`` (:mod:`.dkd`): Decoupled KD;
- ``hkt``, ``hkt-kd`` (:mod:`.hkt`): Hereditary Knowledge Transfer inside a Family;
- ``attention-transfer`` (:mod:`.attention`): attention transfer at the aligned points;
- ``fitnet``, ``fitnet-kd`` (:mod:`.fitnet`): FitNet hints at the aligned points.

The methods that compare the two networks at aligned points build on
:class:`~hkt_core.train.aligned.AlignedFeatures`.

:data:`BUILTIN_METHODS` is the one table of their names, in this order: the core plugin registers it
(:mod:`hkt_core.builtins`), ``hkt train --help`` lists it, and :func:`methods_with_role` gives the
methods every pair must support (``every-pair``: the pre-flight's required set) and the demo's rows
(``demo``). Each follows
:class:`~hkt_core.train.method.Method`; during training a method calls :attr:`Method.model` (the
trainable module, wrapped for distributed training under torchrun) rather than the bare module.
"""

from __future__ import annotations

from .aligned import ALIGNMENT_CHOICES, AlignedFeatures, method_alignment
from .method import Method, MethodContext, StepOutput
from .registry import BUILTIN_METHODS, ROLES, defined_methods, method, methods_with_role

# Imported in the order the table lists them (each file registers its methods as it is defined).
from .baseline import BaselineMethod, ParentMethod
from .kd import KDMethod
from .dkd import DKDMethod, DKDOptions, dkd_loss
from .hkt import HKTKDMethod, HKTMethod, HKTOptions
from .attention import AttentionOptions, AttentionTransferMethod, attention_loss
from .fitnet import FITNET_HINT_WEIGHT, FitNetKDMethod, FitNetMethod, FitNetOptions

__all__ = ["ALIGNMENT_CHOICES", "AlignedFeatures", "AttentionOptions", "AttentionTransferMethod", "BUILTIN_METHODS",
           "BaselineMethod", "DKDMethod", "DKDOptions", "FITNET_HINT_WEIGHT", "FitNetKDMethod", "FitNetMethod",
           "FitNetOptions", "HKTKDMethod", "HKTMethod", "HKTOptions", "KDMethod", "Method", "MethodContext",
           "ParentMethod", "ROLES", "StepOutput", "attention_loss", "defined_methods", "dkd_loss", "method",
           "method_alignment", "methods_with_role"]
