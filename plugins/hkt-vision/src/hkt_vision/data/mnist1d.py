"""MNIST-1D (Greydanus 2020): 40-sample signals generated locally by the ``mnist1d`` package.

Generated with ``mnist1d.data.make_dataset`` and the package's default arguments (never its
download path). Generation takes ~0.4 s per 1,000 samples, so results are cached as ``.npz``
(no pickle) under ``$HKT_HOME/cache/mnist1d`` keyed by every generation argument.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from hkt_core import DatasetBundle

from .arrays import ArrayDataset
from .augment import RandomCropFlip
from .errors import DatasetError

#: generation arguments that are not part of the data (the package's download address)
_NOT_DATA = {"url"}


def generation_args(**overrides: Any) -> dict[str, Any]:
    """The package's default generation arguments with ``overrides`` applied (unknown keys refused)."""
    from mnist1d.data import get_dataset_args

    args = {k: v for k, v in vars(get_dataset_args()).items() if k not in _NOT_DATA}
    unknown = sorted(set(overrides) - set(args))
    if unknown:
        raise DatasetError(f"mnist1d: unknown option(s) {', '.join(unknown)}; allowed: "
                           f"{', '.join(sorted(args))}, cache, augment, shift")
    args.update(overrides)
    if not isinstance(args["num_samples"], int) or args["num_samples"] < 20:
        raise DatasetError(f"mnist1d: num_samples = {args['num_samples']!r} is invalid: an integer >= 20")
    if not 0.0 < float(args["train_split"]) < 1.0:
        raise DatasetError(f"mnist1d: train_split = {args['train_split']!r} is invalid: a number in (0, 1)")
    return args


def generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run ``make_dataset`` with ``args``; returns x, y, x_test, y_test."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    data = make_dataset(ObjectView(dict(args)))
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def load(args: dict[str, Any], cache: bool = True) -> dict[str, np.ndarray]:
    """Generated arrays, from the cache when present."""
    if not cache:
        return generate(args)
    from hkt_core import atomic_write
    from hkt_core import hkt_home

    key = hashlib.sha1(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = hkt_home() / "cache" / "mnist1d" / f"mnist1d-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache file is regenerated and replaced
    arrays = generate(args)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)
    return arrays


def mnist1d(cache: bool = True, augment: bool = False, shift: int = 2, **options: Any) -> DatasetBundle:
    """MNIST-1D as ``(1, 40)`` signals; options are ``make_dataset`` arguments.

    ``num_samples`` (default 5,000) is split by ``train_split`` (default 0.8): for a test set of
    at least 5,000 use e.g. ``num_samples=25000``. The package standardises the signals itself.
    ``augment`` shifts training signals by up to ``shift`` samples.
    """
    args = generation_args(**options)
    arrays = load(args, cache=cache)
    x = torch.from_numpy(arrays["x"].astype(np.float32)).unsqueeze(1)
    x_test = torch.from_numpy(arrays["x_test"].astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(arrays["y"].astype(np.int64))
    y_test = torch.from_numpy(arrays["y_test"].astype(np.int64))
    length = x.shape[-1]
    return DatasetBundle(
        train=ArrayDataset(x, y), test=ArrayDataset(x_test, y_test), input_shapes=((1, length),),
        info={"num_classes": 10, "class_names": [str(i) for i in range(10)], "generation_args": args,
              "source": "mnist1d.data.make_dataset"},
        augment=RandomCropFlip(padding=shift, flip=False) if augment else None,
    )
