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
