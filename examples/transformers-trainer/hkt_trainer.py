"""hkt inside ``transformers.Trainer``: a BERT parent distilled into a smaller BERT with KD, HKT or FitNet.

The child trains in your ``Trainer`` loop through :class:`hkt_zoo.trainer.HKTTrainer`, a
``transformers.Trainer`` subclass: ``hkt_method="kd"`` (Hinton distillation), ``"hkt"`` (the
:class:`hkt_core.Family`) or ``"fitnet"`` (hints at the automatic alignment). The parent is frozen
and never in the optimiser; ``trainer.save_model`` writes the child alone, a ``save_pretrained``
folder that ``from_pretrained`` loads as a plain model.

The data is made here, nothing downloads: sequences of token ids whose label is their
first id modulo 3. The parent is trained first with a plain ``Trainer``.

Run it: ``python examples/transformers-trainer/hkt_trainer.py --method kd hkt fitnet --out trainer-run``
(needs ``pip install -e 'plugins/hkt-zoo[trainer]'``; the CPU is enough).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from hkt_zoo.trainer import HKTTrainer

VOCAB, LABELS = 24, 3


def bert(width: int, layers: int, seed: int) -> BertForSequenceClassification:
    """A BERT classifier built from its configuration (random initialisation)."""
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * width, max_position_embeddings=32, num_labels=LABELS))


def toy_data(samples: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Sequences of 6 to 12 token ids (id 0 is padding); the label is the first id modulo 3."""
    gen = torch.Generator().manual_seed(seed)
    data = []
    for i in range(samples):
        ids = torch.randint(1, VOCAB, (6 + i % 7,), generator=gen)
        data.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                     "labels": torch.tensor(int(ids[0]) % LABELS)})
    return data


def collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pads a batch to its longest sequence, as a padding data collator does."""
    n = max(len(s["input_ids"]) for s in batch)

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.new_zeros(n - len(t))])

    return {"input_ids": torch.stack([pad(s["input_ids"]) for s in batch]),
            "attention_mask": torch.stack([pad(s["attention_mask"]) for s in batch]),
            "labels": torch.stack([s["labels"] for s in batch])}


def arguments(out: Path, steps: int, lr: float) -> TrainingArguments:
    return TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=32,
                             per_device_eval_batch_size=64, learning_rate=lr, logging_steps=max(1, steps // 5),
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0)


def accuracy(model: BertForSequenceClassification, data: list[dict[str, torch.Tensor]]) -> float:
    batch = collate(data)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return float((logits.argmax(1) == batch["labels"]).float().mean())


def train_parent(out: Path, steps: int, train, test) -> BertForSequenceClassification:
    """The parent, trained by a plain ``Trainer`` (in practice: your fine-tuned model, ``from_pretrained``)."""
    parent = bert(64, 2, seed=0)
    Trainer(model=parent, args=arguments(out / "parent", steps, 3e-3), train_dataset=train,
            data_collator=collate).train()
    return parent.eval()


def distil(method: str, parent, out: Path, steps: int, train, test) -> HKTTrainer:
    """The child, trained with ``method`` in a ``Trainer`` loop, then saved alone to ``out/<method>/child``."""
    child = bert(16, 1, seed=1)
    trainer = HKTTrainer(model=child, parent=parent, hkt_method=method, args=arguments(out / method, steps, 3e-3),
                         train_dataset=train, eval_dataset=test, data_collator=collate)
    trainer.train()
    trainer.save_model(str(out / method / "child"))   # the child alone: a save_pretrained folder
    return trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", nargs="+", default=["kd", "hkt", "fitnet"], choices=["kd", "hkt", "fitnet"])
    parser.add_argument("--parent-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", default="trainer-run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    train, test = toy_data(2048, seed=0), toy_data(512, seed=1)
    parent = train_parent(out, args.parent_steps, train, test)
    print(f"parent: test accuracy {accuracy(parent, test):.3f}")
    for method in args.method:
        trainer = distil(method, parent, out, args.steps, train, test)
        loaded = BertForSequenceClassification.from_pretrained(str(out / method / "child"), local_files_only=True)
        print(f"{method}: child test accuracy {accuracy(loaded, test):.3f} (eval loss "
              f"{trainer.evaluate()['eval_loss']:.3f}); saved to {out / method / 'child'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
