"""Registered data sets: factories returning :class:`hkt_core.data.DatasetBundle`, no downloads."""

from .augment import RandomCropFlip
from .cifar10 import cifar10
from .cifar100 import cifar100
from .digits import digits
from .errors import DatasetError
from .imagefolder import imagefolder
from .mnist1d import mnist1d
from .tabular import tabular
from .textures import textures

#: registered data set name -> factory
DATASETS = {
    "digits": digits,
    "mnist1d": mnist1d,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "imagefolder": imagefolder,
    "textures": textures,
    "tabular": tabular,
}

__all__ = ["DATASETS", "DatasetError", "RandomCropFlip", *DATASETS]
