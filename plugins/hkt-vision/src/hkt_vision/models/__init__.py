"""The plugin's networks, each importable by its registered name (``hkt_vision.models.resnet20``)."""

from .convnet import (ConvNet, digits_cnn_large, digits_cnn_small, digits_cnn_tiny, mnist1d_cnn_gap,
                      mnist1d_cnn_large, mnist1d_cnn_tiny)
from .mlp import MLP, mnist1d_mlp, mnist1d_mlp_large, tabular_mlp
from .resnet import (CifarResNet, mnist1d_resnet20, mnist1d_resnet56, resnet20, resnet32, resnet44, resnet56,
                     resnet110)
from .transformer import FeatureTransformer, PatchTransformer, digits_vit, digits_vit_tiny, tabular_transformer

#: registered model name -> (factory, metadata)
MODELS = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "digits_cnn_large": digits_cnn_large,
    "digits_cnn_small": digits_cnn_small,
    "digits_cnn_tiny": digits_cnn_tiny,
    "mnist1d_cnn_large": mnist1d_cnn_large,
    "mnist1d_cnn_gap": mnist1d_cnn_gap,
    "mnist1d_cnn_tiny": mnist1d_cnn_tiny,
    "mnist1d_mlp": mnist1d_mlp,
    "mnist1d_mlp_large": mnist1d_mlp_large,
    "mnist1d_resnet56": mnist1d_resnet56,
    "mnist1d_resnet20": mnist1d_resnet20,
    "digits_vit": digits_vit,
    "digits_vit_tiny": digits_vit_tiny,
    "tabular_transformer": tabular_transformer,
    "tabular_mlp": tabular_mlp,
}

__all__ = ["MODELS", "CifarResNet", "ConvNet", "FeatureTransformer", "MLP", "PatchTransformer", *MODELS]
