"""A Family on graphs ``align`` traced with ``torch.export`` (Hugging Face transformers, which torch.fx
cannot trace): it builds, trains a step on token-id batches of another batch size and sequence
length than the example (with a padding mask), and exports a child equal to the plain child."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from hkt_core.align import align  # noqa: E402
from hkt_core.family import Family  # noqa: E402
from hkt_core.trace.kinds import _target_name  # noqa: E402

VOCAB = 100


def _bert(layers: int) -> torch.nn.Module:
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=64, num_labels=3)
    return transformers.BertForSequenceClassification(config)


def _gpt2(layers: int) -> torch.nn.Module:
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=layers, n_head=2, n_positions=64,
                                     num_labels=3, pad_token_id=0, use_cache=False)
    return transformers.GPT2ForSequenceClassification(config)


def _tokens(batch: int, length: int, pad_from: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, VOCAB, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    if pad_from is not None:
        mask[0, pad_from:] = 0
        ids[0, pad_from:] = 0
    return ids, mask


def _plain(child: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    kwargs = {"attention_mask": inputs[1]} if len(inputs) > 1 else {}
    return child(inputs[0], **kwargs).logits


# BERT takes (input_ids, attention_mask) positionally; GPT-2's second positional input is
# past_key_values, so it is fed token ids alone (its padding is read from pad_token_id).
@pytest.mark.parametrize("make, parent_layers, child_layers, with_mask", [(_bert, 4, 2, True), (_gpt2, 4, 2, False)],
                         ids=["bert-4-to-2", "gpt2-4-to-2"])
def test_family_on_export_graph_trains_on_other_shapes_and_exports_the_plain_child(make, parent_layers,
                                                                                   child_layers, with_mask):
    torch.manual_seed(0)
    parent, child = make(parent_layers), make(child_layers)

    def batch(*shape, **pad):
        return _tokens(*shape, **pad)[:2 if with_mask else 1]

    example = batch(2, 16)
    alignment = align(parent, child, example)
    assert [t.backend for t in alignment.traced] == ["export", "export"]
    family = Family(parent, child, alignment)   # example inputs from the alignment, in its dtypes

    inputs = batch(3, 9, pad_from=5)               # batch 3 and length 9, not the example's 2 x 16
    target = torch.tensor([0, 1, 2])
    child.train()
    before = [p.detach().clone() for p in child.parameters()]
    optimizer = torch.optim.SGD(child.parameters(), lr=0.1)
    output = family(*inputs)
    assert output.native.shape == (3, 3) and output.inherited.shape == (3, 3)
    loss = family.loss(output, target)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, child.parameters()))
    assert all(p.grad is None for p in parent.parameters())

    exported = family.export_child()
    family.eval()
    exported.eval()
    with torch.no_grad():
        plain = _plain(child, inputs)
        assert torch.equal(_plain(exported, inputs), plain)
        torch.testing.assert_close(family(*inputs).native, plain, rtol=0, atol=1e-6)
        longer = batch(2, 24)                      # longer than the example too
        torch.testing.assert_close(family(*longer).native, _plain(child, longer), rtol=0, atol=1e-6)


def test_aten_overloads_read_as_their_operation():
    """Value kinds on aten graphs: ``aten.layer_norm.default`` is a layer norm (so hidden states stay tokens)."""
    class Node:
        def __init__(self, target):
            self.target = target

    assert _target_name(Node(torch.ops.aten.layer_norm.default)) == "layer_norm"
    assert _target_name(Node(torch.ops.aten.add.Tensor)) == "add"
    assert _target_name(Node(torch.nn.functional.linear)) == "linear"


def test_bert_hidden_states_in_an_export_graph_are_tokens():
    torch.manual_seed(0)
    parent, child = _bert(4), _bert(2)
    # three stages: an inner point on the layers' hidden states (two stages mix only the pooler's vector)
    alignment = align(parent, child, _tokens(2, 16), stages=3)
    hidden = [p for p in alignment.pairs[:-1] if len(p.parent_shape) == 3 and p.parent_shape[-1] == 32]
    assert hidden and all(p.parent_kind == "tokens" for p in hidden)
