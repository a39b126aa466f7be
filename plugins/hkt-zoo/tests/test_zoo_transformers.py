"""The ``transformers`` model source and adapter of hkt-zoo: registered through the entry point,
options allow-listed, weights only from local safetensors, and a zoo pair that trains in a Family."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from hkt_core.adapters import adapter_for  # noqa: E402
from hkt_core.align import align  # noqa: E402
from hkt_core.errors import ConfigError  # noqa: E402
from hkt_core.family import Family  # noqa: E402
from hkt_core.models import build_model  # noqa: E402
from hkt_core.plugins import default_manager  # noqa: E402

BERT = {"vocab_size": 50, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
        "max_position_embeddings": 32, "num_labels": 3}


def _bert(layers: int, **options):
    return build_model("transformers", default_manager(), architecture="BertForSequenceClassification",
                       config={**BERT, "num_hidden_layers": layers}, **options)


def test_registered_source_builds_the_named_architecture_with_its_adapter():
    model = _bert(2)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_hidden_layers == 2
    adapter = adapter_for(model, default_manager())
    assert type(adapter).__name__ == "TransformersAdapter"
    ids, mask = adapter.example_inputs(model, [(2, 7), (2, 7)])
    assert ids.dtype == torch.long and mask.dtype == torch.long and int(ids.max()) < BERT["vocab_size"]
    output = model(ids, attention_mask=mask)
    assert adapter.prediction(output) is output.logits


@pytest.mark.parametrize("options, message", [
    ({"architecture": "AutoModel"}, "is not one of"),
    ({"architecture": "BertForSequenceClassification", "revision": "main"}, "unknown option(s) revision"),
    ({"architecture": "BertForSequenceClassification", "config": {"trust_remote_code": True}}, "not allowed"),
    ({"architecture": "BertForSequenceClassification", "config": {"hidden_size": {"a": 1}}}, "must be a number"),
    ({"architecture": "BertForSequenceClassification", "weights": "/nonexistent/w.safetensors"}, "does not exist"),
    ({"architecture": "BertForSequenceClassification", "pretrained": "/nonexistent"}, "does not exist"),
])
def test_bad_options_fail_in_one_line(options, message):
    with pytest.raises(ConfigError, match="model 'transformers'") as info:
        build_model("transformers", default_manager(), **options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_weights_load_from_local_safetensors_only(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = _bert(2)
    file = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    loaded = _bert(2, weights=str(file))
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    pickle = tmp_path / "w.bin"
    torch.save(source.state_dict(), pickle)
    with pytest.raises(ConfigError, match="never read"):
        _bert(2, weights=str(pickle))


def test_zoo_pair_trains_in_a_family_on_longer_batches():
    torch.manual_seed(0)
    parent, child = _bert(4), _bert(2)
    manager = default_manager()
    example = adapter_for(child, manager).example_inputs(child, [(2, 8), (2, 8)])
    family = Family(parent, child, align(parent, child, example))
    ids = torch.randint(1, BERT["vocab_size"], (4, 12))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    loss = family.loss(family(ids, mask), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in child.parameters())
    family.eval()
    with torch.no_grad():
        torch.testing.assert_close(family(ids, mask).native, child(ids, attention_mask=mask).logits,
                                   rtol=0, atol=1e-6)
        assert torch.equal(family.export_child().eval()(ids, attention_mask=mask).logits,
                           child(ids, attention_mask=mask).logits)


GPT2 = {"vocab_size": 50, "n_head": 2, "n_positions": 32, "num_labels": 3, "pad_token_id": 0,
        "bos_token_id": 1, "eos_token_id": 1}


def _gpt2(layers: int, width: int):
    return build_model("transformers", default_manager(), architecture="GPT2ForSequenceClassification",
                       config={**GPT2, "n_layer": layers, "n_embd": width})


def test_text_models_take_ids_then_the_mask_positionally_gpt2_included():
    from hkt_zoo.transformers_source import positional_class

    assert positional_class(transformers.BertForSequenceClassification) is transformers.BertForSequenceClassification
    assert positional_class(transformers.DistilBertForSequenceClassification) is \
        transformers.DistilBertForSequenceClassification
    torch.manual_seed(0)
    model = _gpt2(2, 16).eval()
    # GPT-2's forward takes its cache second: hkt's model binds the mask by name, nothing else changes
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    assert isinstance(model, transformers.GPT2ForSequenceClassification)
    plain = transformers.GPT2ForSequenceClassification(model.config).eval()
    assert list(plain.state_dict()) == list(model.state_dict())
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(2, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    with torch.no_grad():
        mine = model(ids, mask).logits
        assert torch.equal(mine, plain(input_ids=ids, attention_mask=mask).logits)
        assert not torch.equal(mine, model(ids).logits)   # the mask is used, not dropped
    with pytest.raises(TypeError, match="at most 3 positional inputs"):
        model(ids, mask, mask, mask)


def test_a_gpt2_pair_trains_in_a_family_and_exports_the_plain_child():
    torch.manual_seed(0)
    parent, child = _gpt2(4, 32), _gpt2(2, 16)
    manager = default_manager()
    example = adapter_for(child, manager).example_inputs(child, [(2, 8), (2, 8)])
    alignment = align(parent, child, example, stages=3, manager=manager)
    assert [p.parent for p in alignment.pairs][:2] == ["transformer.h.1", "transformer.ln_f"]
    family = Family(parent, child, alignment, manager=manager)
    ids = torch.randint(2, 50, (4, 11))
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    loss = family.loss(family(ids, mask), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in child.transformer.h[0].parameters())
    family.eval()
    with torch.no_grad():
        assert torch.equal(family.export_child().eval()(ids, mask).logits,
                           child.eval()(input_ids=ids, attention_mask=mask).logits)
