"""hkt-vision: the classification task plugin for hkt.

What it adds (all through the ``hkt`` entry point ``vision``):

- models: CIFAR ResNets ``resnet20`` ... ``resnet110`` (He et al. 2016, option-A shortcuts),
  small CNNs for 8x8 digits, 1-D CNNs and MLPs for MNIST-1D (:mod:`hkt_vision.models`);
- adapters declaring each network's functional blocks (``stem``, ``layer1`` ..., ``pool``, ``fc``);
- data sets, none downloaded: ``digits``, ``mnist1d``, ``cifar10`` (a user's directory),
  ``imagefolder`` (a user's images), ``textures`` (:mod:`hkt_vision.data`);
- pair cards: ``cifar-resnet110-resnet20`` (the paper's setup), ``cifar-resnet56-resnet20``,
  ``digits-demo``, ``digits-cnn-3stage``, ``mnist1d-cnn-tinycnn``, ``mnist1d-cnn-mlp``;
- confusion matrices (:mod:`hkt_vision.plots`) and ``hkt vision confusion RUN_DIR``.
"""

__version__ = "0.1.0"
