import torch
from torch import nn
from torch.utils.data import TensorDataset

from hkt_core.data import DatasetBundle


def table(n_train: int = 400, n_test: int = 100):
    """12 features, 3 classes; yields (inputs, target) per sample."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 3, generator=g)

    def draw(n):
        x = torch.randn(n, 12, generator=g)
        return TensorDataset(x, (x @ w).argmax(1))

    return DatasetBundle(draw(n_train), draw(n_test), input_shapes=((12,),), info={"num_classes": 3})


def big(hidden: int = 64, classes: int = 3):
    return nn.Sequential(nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, classes))


def small(hidden: int = 8, classes: int = 3):
    return nn.Sequential(nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, classes))
