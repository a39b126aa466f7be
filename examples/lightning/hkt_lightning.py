"""HKT inside PyTorch Lightning: a ``LightningModule`` that trains a child in a :class:`hkt_core.Family`.

Lightning owns the loop (devices, precision, epochs); the Family owns the lockstep forward and
the composite loss. Mixed precision is Lightning's (``precision="bf16-mixed"``: the forward and
the loss run under ``torch.autocast``; the weights stay float32). Checkpoints go through
``state_dict()``: :func:`save_weights` writes the module's state (child, frozen parent, ETM
operators) to a safetensors file and :func:`load_weights` puts it back into a fresh module, so
nothing is pickled.

Run it: ``python examples/lightning/hkt_lightning.py --epochs 2 --out lightning-run``
(needs ``pip install lightning``; CPU is enough).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from hkt_core import Family, HKTConfig, align


def cnn(width: int) -> nn.Module:
    """A small image classifier for 1x8x8 inputs (the parent is wide, the child narrow)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def toy_data(samples: int = 512, seed: int = 0) -> torch.utils.data.TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(samples, 1, 8, 8, generator=gen)
    labels = (images.mean((1, 2, 3)) > 0).long() + 2 * (images[:, 0, :4].mean((1, 2)) > 0).long()
    return torch.utils.data.TensorDataset(images, labels)


class HKTModule(L.LightningModule):
    """The Family as a LightningModule: ``training_step`` returns ``family.loss``; validation
    scores the child alone (what gets deployed)."""

    def __init__(self, parent: nn.Module, child: nn.Module, example: torch.Tensor,
                 config: HKTConfig = HKTConfig(), lr: float = 0.05) -> None:
        super().__init__()
        alignment = align(parent, child, example, stages=2)
        self.family = Family(parent, child, alignment, config, example_inputs=example)
        self.lr = lr
        #: dtype of the child's output in the last training step (bfloat16 under bf16-mixed)
        self.forward_dtype: torch.dtype | None = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.family(x)
        self.forward_dtype = out.native.dtype
        parts = self.family.loss_parts(out, y)
        self.log_dict({"loss": parts.total, "L1": parts.l1, "L2": parts.l2, "L3": parts.l3}, prog_bar=True)
        return parts.total

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.family.child(x)
        self.log_dict({"val_loss": F.cross_entropy(logits.float(), y),
                       "val_accuracy": (logits.argmax(1) == y).float().mean()})

    def configure_optimizers(self):
        return torch.optim.SGD(self.family.trainable_parameters(), lr=self.lr, momentum=0.9)


def save_weights(module: HKTModule, path: str | Path) -> None:
    """The module's ``state_dict`` (child, parent, ETM operators) as safetensors."""
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(path))


def load_weights(module: HKTModule, path: str | Path) -> HKTModule:
    module.load_state_dict(load_file(str(path)))
    return module


def build(seed: int = 0) -> HKTModule:
    torch.manual_seed(seed)
    parent = cnn(32)   # in practice: a trained parent (parent.load_state_dict(...))
    child = cnn(8)
    return HKTModule(parent, child, torch.randn(2, 1, 8, 8))


def train(epochs: int, out: Path, precision: str = "bf16-mixed", batch_size: int = 64) -> HKTModule:
    """Fit with Lightning, then write ``out/hkt.safetensors`` (resumable) and ``out/child.safetensors``."""
    out.mkdir(parents=True, exist_ok=True)
    module = build()
    data = toy_data()
    train_set, val_set = torch.utils.data.random_split(data, [448, 64], generator=torch.Generator().manual_seed(0))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(out))
    trainer.fit(module, torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True),
                torch.utils.data.DataLoader(val_set, batch_size=batch_size))
    save_weights(module, out / "hkt.safetensors")
    save_file(module.family.export_child().state_dict(), str(out / "child.safetensors"))
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="lightning-run")
    parser.add_argument("--precision", default="bf16-mixed", help="Lightning's precision: 32-true, bf16-mixed, 16-mixed")
    args = parser.parse_args(argv)
    module = train(args.epochs, Path(args.out), args.precision)
    print(f"trained {args.epochs} epoch(s) with precision {args.precision} (forward dtype {module.forward_dtype}); "
          f"weights in {args.out}/hkt.safetensors, the child alone in {args.out}/child.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
