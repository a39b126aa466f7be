"""Families whose graphs have data-dependent sizes: encoder-decoder sequence classifiers (T5, mT5,
BART) read the hidden state at each row's end-of-sequence token, a boolean-mask selection whose
length ``torch.export`` can only name (an unbacked ``u0``). They trace, align, train a step on a
batch of another size and length, and export a child equal to the plain child.

The transformers models are built from their configuration classes at a small width with random
weights (nothing downloads); those tests skip without transformers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hkt_core
from hkt_core.family import Family


class EndToken(nn.Module):
    """Classifies each row by its hidden state at the end token (id 1), as T5 and BART classifiers
    do; the branch on a size keeps torch.fx out, so torch.export traces it."""

    def __init__(self, width: int, vocab: int = 20) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, 3)

    def forward(self, ids):
        h = self.mix(self.embed(ids)).relu()
        if h.shape[1] > 1:
            h = h + self.mix(h)
        selected = h[ids.eq(1), :]   # (u0, width): as many rows as end tokens
        return self.head(selected.view(h.shape[0], -1, h.shape[-1])[:, -1, :])


def _rows(batch: int, length: int, seed: int, vocab: int = 20, eos: int = 1) -> torch.Tensor:
    ids = torch.randint(eos + 1, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
    ids[:, -1] = eos
    return ids


def _round(parent: nn.Module, child: nn.Module, example: tuple, batch: tuple, plain, manager=None,
           example_inputs=None) -> list[tuple[str, str]]:
    """Align (2 stages), one training step on ``batch``, the exported child equal to the plain child."""
    alignment = hkt_core.align(parent, child, example, stages=2, manager=manager)
    family = Family(parent, child, alignment, manager=manager, example_inputs=example_inputs)
    family.train()
    loss = family.loss(family(*batch), torch.arange(batch[0].shape[0]) % 3)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in child.parameters() if p.requires_grad)
    family.eval()
    with torch.no_grad():
        assert torch.equal(plain(family.export_child().eval(), batch), plain(child.eval(), batch))
    return [(p.parent, p.child) for p in alignment.pairs]


def test_a_family_with_a_data_dependent_lookup_aligns_trains_and_exports():
    torch.manual_seed(0)
    parent, child = EndToken(16), EndToken(8)
    example = _rows(2, 6, 0)
    pairs = _round(parent, child, (example,), (_rows(3, 9, 1),), lambda m, b: m(*b), example_inputs=example)
    # the selected rows have no size of the graph: the point is the lookup's (B, D) result
    assert pairs[0] == ("select", "select")


# -- transformers encoder-decoder classifiers -------------------------------------------------------

T5 = {"vocab_size": 100, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_heads": 4, "num_labels": 3,
      "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
BART = {"vocab_size": 100, "d_model": 32, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
        "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 64, "num_labels": 3,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2}
PAIRS = {
    "T5ForSequenceClassification": (T5, "num_layers"),
    "MT5ForSequenceClassification": (T5, "num_layers"),
    "BartForSequenceClassification": (BART, ("encoder_layers", "decoder_layers")),
}


def _zoo_model(architecture: str, layers: int) -> nn.Module:
    from hkt_core.models import build_model
    from hkt_core.plugins import default_manager

    config, depth = PAIRS[architecture]
    depths = {d: layers for d in ((depth,) if isinstance(depth, str) else depth)}
    return build_model("transformers", default_manager(), architecture=architecture, config={**config, **depths})


def _text_batch(model: nn.Module, batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ending with the end-of-sequence token (once per row), a mask padding the first row."""
    ids = _rows(batch, length, seed, vocab=model.config.vocab_size, eos=model.config.eos_token_id)
    mask = torch.ones_like(ids)
    mask[0, length - 3:-1] = 0
    return ids, mask


def _plain(model: nn.Module, batch: tuple) -> torch.Tensor:
    return model(input_ids=batch[0], attention_mask=batch[1]).logits


@pytest.mark.parametrize("architecture", ["T5ForSequenceClassification", "BartForSequenceClassification"])
def test_encoder_decoder_classifier_pair_aligns_trains_and_exports(architecture):
    """Aligned on the adapter's example inputs (rows ending with the end token), trained on a batch
    of another size and length; the Family probes with the alignment's input shapes."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, architecture):
        pytest.skip(f"transformers {transformers.__version__} has no {architecture}")
    from hkt_core.adapters import adapter_for
    from hkt_core.plugins import default_manager

    torch.manual_seed(0)
    parent, child = _zoo_model(architecture, 2), _zoo_model(architecture, 1)
    manager = default_manager()
    example = adapter_for(child, manager).example_inputs(child, [(2, 8), (2, 8)])
    assert (example[0] == child.config.eos_token_id).sum(1).tolist() == [1, 1]   # one end token per row, last
    pairs = _round(parent, child, example, _text_batch(child, 3, 11, 1), _plain, manager=manager)
    assert pairs[-1] == ("classification_head", "classification_head")


def test_mt5_classifier_traces_with_its_end_token_lookup_data_dependent():
    """mT5 is T5's code with another vocabulary: its trace (torch.export) marks the selected rows
    data-dependent, without a size of the graph, and finds the logits."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "MT5ForSequenceClassification"):
        pytest.skip(f"transformers {transformers.__version__} has no MT5ForSequenceClassification")
    from hkt_core.adapters import adapter_for
    from hkt_core.plugins import default_manager
    from hkt_core.trace import trace

    model = _zoo_model("MT5ForSequenceClassification", 1)
    adapter = adapter_for(model, default_manager())
    traced = trace(model, adapter.example_inputs(model, [(2, 8), (2, 8)]), adapter)
    assert traced.backend == "export" and traced.shape(traced.prediction) == (2, 3)
    dependent = [d for _, d in traced.graph.nodes(data=True) if d["data_dependent"] and d["op"] == "call_function"
                 and d["example_shape"] is not None and len(d["example_shape"]) == 2]
    assert dependent and all(d["shape"] is None and d["example_shape"][1] == 32 for d in dependent)


def test_the_zoo_turns_the_cache_off_in_every_stack_of_an_encoder_decoder():
    """T5's decoder holds a copy of the configuration: with its cache on, the model would return a
    cache object, which torch.export cannot return."""
    pytest.importorskip("transformers")
    model = _zoo_model("T5ForSequenceClassification", 1)
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "use_cache")]
    assert len({id(c) for c in configs}) > 1 and not any(c.use_cache for c in configs)
