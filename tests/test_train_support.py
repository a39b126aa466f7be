"""A tiny classification pair for the trainer's tests, usable in-process and from subprocesses.

Data: 8x8 single-channel images of three noisy templates (generated, deterministic). Parent and
child are small CNNs with the same layout, so a run takes well under a second per epoch. The pair
card refers to this module by ``module:callable`` and reaches subprocesses as a user card in
``$HKT_HOME/pairs`` (with this folder on PYTHONPATH).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from hkt_core.data import DatasetBundle
from hkt_core.pairs import PairCard

HERE = Path(__file__).resolve().parent
MODULE = "test_train_support"


class TinyImages(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, delay: float = 0.0, rank1_exits_after: int = 0) -> None:
        self.x, self.y, self.delay = x, y, delay
        #: stands for a distributed peer killed mid-run: rank 1 exits after this many samples
        self.rank1_exits_after, self.served = rank1_exits_after, 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        self.served += 1
        if self.rank1_exits_after and self.served > self.rank1_exits_after and os.environ.get("RANK") == "1":
            os._exit(9)
        return self.x[i], self.y[i]


def flip_and_jitter(inputs: torch.Tensor, target: torch.Tensor, generator: torch.Generator):
    """A batch augmentation: random horizontal flips and additive noise, from ``generator`` only."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise TypeError(f"expected one (B, 1, 8, 8) tensor, got {type(inputs).__name__}")
    flip = torch.rand(inputs.shape[0], generator=generator) < 0.5
    out = torch.where(flip[:, None, None, None], inputs.flip(-1), inputs)
    return out + 0.1 * torch.randn(out.shape, generator=generator), target


def make_dataset(n_train: int = 200, n_test: int = 60, delay: float = 0.0, noise: float = 0.8,
                 augment: bool = False, rank1_exits_after: int = 0) -> DatasetBundle:
    gen = torch.Generator().manual_seed(1234)
    templates = torch.randn(3, 1, 8, 8, generator=gen)

    def draw(n):
        y = torch.arange(n) % 3
        x = templates[y] + noise * torch.randn(n, 1, 8, 8, generator=gen)
        return x, y

    return DatasetBundle(TinyImages(*draw(n_train), delay, rank1_exits_after), TinyImages(*draw(n_test)), ((1, 8, 8),),
                         {"num_classes": 3}, augment=flip_and_jitter if augment else None)


class TinyCNN(nn.Module):
    def __init__(self, width: int = 4, batchnorm: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1),
                                  nn.BatchNorm2d(width) if batchnorm else nn.Identity(), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, 3)

    def forward(self, x):
        return self.head(self.pool(self.body(self.stem(x))).flatten(1))


def make_parent(batchnorm: bool = False) -> nn.Module:
    return TinyCNN(8, batchnorm)


def make_child(batchnorm: bool = False) -> nn.Module:
    return TinyCNN(4, batchnorm)


class Interrupt(Exception):
    """Stands for a kill right after an epoch's checkpoint was committed (or at another chosen moment)."""


def stop_after(epoch: int):
    """An epoch callback raising :class:`Interrupt` once ``epoch`` is committed."""
    def callback(done: int, record: dict) -> None:
        if done == epoch:
            raise Interrupt
    return callback


def card_dict(name: str = "tiny-pair", *, delay: float = 0.0, batchnorm: bool = False, augment: bool = False,
              **train) -> dict:
    settings = {"epochs": 2, "batch_size": 20, "lr": 0.05, "optimizer": "sgd", "schedule": "cosine",
                "val_fraction": 0.2, "weight_decay": 0.0}
    settings.update(train)
    return {
        "name": name, "task": "classification", "description": "tiny generated test pair",
        "parent": f"{MODULE}:make_parent", "child": f"{MODULE}:make_child",
        "parent_options": {"batchnorm": batchnorm}, "child_options": {"batchnorm": batchnorm},
        "input_shapes": [[1, 1, 8, 8]], "dataset": f"{MODULE}:make_dataset",
        "dataset_options": {"delay": delay, "augment": augment}, "stages": 2, "train": settings,
        "parent_train": {"epochs": 2, "lr": 0.05},
    }


def tiny_card(name: str = "tiny-pair", **kwargs) -> PairCard:
    return PairCard.from_dict(card_dict(name, **kwargs))


def cards_plugin(*cards: PairCard, methods: dict | None = None):
    """A test plugin registering pair cards (and methods), exactly as a third-party plugin would."""
    import types

    from hkt_core.plugins.markers import hookimpl

    @hookimpl
    def hkt_register_pairs(registry):
        for card in cards:
            registry.add(card.name, card)

    @hookimpl
    def hkt_register_methods(registry):
        for name, cls in (methods or {}).items():
            registry.add(name, cls)

    return types.SimpleNamespace(hkt_register_pairs=hkt_register_pairs, hkt_register_methods=hkt_register_methods)


def manager_with(*cards: PairCard, methods: dict | None = None):
    """A plugin manager with the installed plugins plus ``cards`` (and ``methods``)."""
    import hkt_core

    return hkt_core.get_plugin_manager(plugins={"testcards": cards_plugin(*cards, methods=methods)})


def install_user_card(home: Path, **kwargs) -> PairCard:
    """Store the tiny card in ``home/pairs`` so the ``hkt`` command of a subprocess sees it."""
    card = tiny_card(**kwargs)
    folder = home / "pairs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{card.name}.toml").write_text(card.to_toml(), encoding="utf-8")
    return card


def subprocess_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HKT_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def hkt_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hkt_core.cli.main", *args]


def test_tiny_dataset_is_deterministic_and_shaped():
    a, b = make_dataset(), make_dataset()
    assert len(a.train) == 200 and len(a.test) == 60
    x, y = a.train[5]
    assert x.shape == (1, 8, 8) and int(y) == 5 % 3
    assert torch.equal(a.train.x, b.train.x)
    assert make_child()(x[None]).shape == (1, 3)
