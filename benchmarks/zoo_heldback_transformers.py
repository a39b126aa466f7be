"""Held-back transformers pairs (architectures never used before in this project, listed before the
first run): each is built from its configuration class at a small width with random initialisation,
aligned at 3 stages on example inputs, trained one step on a batch of another size (text: another,
padded sequence length) and exported; the exported child must equal the plain child on that batch.

    python benchmarks/zoo_heldback_transformers.py [--quick] [--out docs/results/zoo_heldback_transformers.json]

A failing pair is a result: it is recorded with its error, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo_heldback import family_round

ROOT = Path(__file__).resolve().parents[1]
VOCAB, CLASSES = 60, 3


def _text(layers: int, width: int, **extra: Any) -> dict[str, Any]:
    return {"vocab_size": VOCAB, "hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": 2,
            "intermediate_size": 2 * width, "max_position_embeddings": 64, "num_labels": CLASSES,
            "pad_token_id": 0, **extra}


def _decoder(layers: int, width: int) -> dict[str, Any]:
    return _text(layers, width, num_key_value_heads=2, bos_token_id=1, eos_token_id=1)


#: (parent architecture, its config, child architecture, its config): written down before the first run
PAIRS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("RobertaForSequenceClassification", _text(4, 32), "AlbertForSequenceClassification",
     _text(2, 16, embedding_size=16)),
    ("ElectraForSequenceClassification", _text(4, 32, embedding_size=32), "DistilBertForSequenceClassification",
     {"vocab_size": VOCAB, "dim": 16, "n_layers": 2, "n_heads": 2, "hidden_dim": 32, "max_position_embeddings": 64,
      "num_labels": CLASSES, "pad_token_id": 0}),
    ("DebertaV2ForSequenceClassification", _text(4, 32), "BertForSequenceClassification", _text(2, 16)),
    ("ModernBertForSequenceClassification", _text(4, 32), "XLMRobertaForSequenceClassification", _text(2, 16)),
    ("LlamaForSequenceClassification", _decoder(4, 32), "Qwen2ForSequenceClassification", _decoder(2, 16)),
    ("MistralForSequenceClassification", _decoder(4, 32), "GPT2ForSequenceClassification",
     {"vocab_size": VOCAB, "n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 64, "num_labels": CLASSES,
      "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}),
    ("ConvNextForImageClassification", {"num_channels": 3, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 2, 1],
                                        "num_labels": CLASSES},
     "RegNetForImageClassification", {"num_channels": 3, "embedding_size": 8, "hidden_sizes": [8, 16, 32, 64],
                                      "depths": [1, 1, 1, 1], "groups_width": 8, "num_labels": CLASSES}),
    ("SwinForImageClassification", {"image_size": 32, "patch_size": 2, "num_channels": 3, "embed_dim": 16,
                                    "depths": [2, 2], "num_heads": [2, 4], "window_size": 4, "num_labels": CLASSES},
     "DeiTForImageClassification", {"image_size": 32, "patch_size": 4, "num_channels": 3, "hidden_size": 16,
                                    "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
                                    "num_labels": CLASSES}),
    # hidden_dim is round_filters(1280 * width_coefficient): the first run left it at its default (2560),
    # which the plain model itself rejects; the one change after that run
    ("EfficientNetForImageClassification", {"image_size": 32, "num_channels": 3, "width_coefficient": 0.25,
                                            "depth_coefficient": 0.25, "hidden_dim": 320, "num_labels": CLASSES},
     "ResNetForImageClassification", {"num_channels": 3, "embedding_size": 8, "hidden_sizes": [8, 16, 32, 64],
                                      "depths": [1, 1, 1, 1], "num_labels": CLASSES}),
]
#: ``--quick``: one text pair and one image pair
QUICK = [PAIRS[0], PAIRS[6]]


def _inputs(model, batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Token ids and a mask padded after ``length - 2`` in the first row (text), or images."""
    if getattr(model, "main_input_name", None) == "input_ids":
        ids = torch.randint(2, VOCAB, (batch, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[0, length - 2:] = 0
        return ids, mask
    return (torch.randn(batch, 3, 32, 32, generator=generator),)


def _plain(model, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The plain model's prediction, called by keyword as a user would call it."""
    names = ("input_ids", "attention_mask") if len(inputs) == 2 else ("pixel_values",)
    return model(**dict(zip(names, inputs))).logits


def run_pair(parent_arch: str, parent_config: dict, child_arch: str, child_config: dict, manager) -> dict:
    from hkt_core.adapters import adapter_for
    from hkt_core.models import build_model

    row: dict[str, Any] = {"parent": parent_arch, "child": child_arch}
    started = time.time()
    try:
        torch.manual_seed(0)
        parent = build_model("transformers", manager, architecture=parent_arch, config=parent_config)
        child = build_model("transformers", manager, architecture=child_arch, config=child_config)
        row["parameters"] = [sum(p.numel() for p in m.parameters()) for m in (parent, child)]
        text = getattr(child, "main_input_name", None) == "input_ids"
        for role, model in (("parent", parent), ("child", child)):  # a configuration the model itself refuses
            try:
                with torch.no_grad():
                    _plain(model.eval(), _inputs(model, 2, 8, torch.Generator().manual_seed(0)))
            except Exception as exc:
                raise ValueError(f"the plain {role} rejects its configuration: {type(exc).__name__}: {exc}") from None
        example = adapter_for(child, manager).example_inputs(child, [(2, 8), (2, 8)] if text else [(2, 3, 32, 32)])
        batch = _inputs(child, 3, 13, torch.Generator().manual_seed(1))   # another batch size and length
        family_round(parent, child, example, batch, torch.tensor([0, 1, 2]), manager, _plain, into=row)
        row["step_shape"] = list(batch[0].shape)
    except Exception as exc:  # recorded: a failing pair is a result
        row.update(ok=False, error=f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:400])
    row["seconds"] = round(time.time() - started, 2)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one text pair and one image pair")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON written (default docs/results/zoo_heldback_transformers.json; --quick: none)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("transformers") is None:
        print("transformers not installed: nothing measured, nothing written (pip install 'hkt-zoo[transformers]')",
              file=sys.stderr)
        return 0
    import transformers

    from hkt_core.plugins import default_manager

    transformers.logging.set_verbosity_error()
    manager = default_manager()
    rows = []
    for pair in (QUICK if args.quick else PAIRS):
        rows.append(run_pair(*pair, manager))
        r = rows[-1]
        print(f"{r['parent']} -> {r['child']}: {'ok' if r['ok'] else 'FAIL'} "
              f"{r.get('points', r.get('error'))} ({r['seconds']} s)", flush=True)
    out = args.out or (None if args.quick else ROOT / "docs" / "results" / "zoo_heldback_transformers.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                                "python": platform.python_version()},
                                   "quick": args.quick, "pairs": rows}, indent=2) + "\n")
        print(f"wrote {out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
