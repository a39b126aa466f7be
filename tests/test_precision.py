"""``--precision``: autocast forwards, float32 attention, gradient scaling, float32 checkpoints, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import hkt_core
from hkt_core.config import TrainConfig
from hkt_core.errors import ConfigError
from hkt_core.etm import genetic_attention
from hkt_core.train.precision import MixedPrecision, autocast
from test_etm_operators import reference_ga
from test_train_support import make_child, manager_with, tiny_card


@pytest.mark.parametrize("layout", ["spatial", "channel"])
def test_genetic_attention_keeps_its_softmax_in_float32_under_autocast(layout):
    gen = torch.Generator().manual_seed(0)
    query, source = torch.randn(3, 16, 5, 5, generator=gen), torch.randn(3, 16, 5, 5, generator=gen)
    reference = reference_ga(query, source, layout).reshape(query.shape)
    with autocast("bf16", "cpu"):
        inside = genetic_attention(query, source, layout)
        # what autocast would have done to the attention: bfloat16 matmuls and softmax
        lowered = torch.nn.functional.scaled_dot_product_attention(
            query.flatten(2).transpose(1, 2), source.flatten(2).transpose(1, 2), source.flatten(2).transpose(1, 2))
    assert lowered.dtype == torch.bfloat16, "autocast no longer lowers attention: this test proves nothing"
    assert inside.dtype == torch.float32
    assert torch.allclose(inside.double(), reference, atol=1e-5, rtol=1e-5)
    # bfloat16 inputs: the result is the float32 computation rounded once to bfloat16
    q16, s16 = query.bfloat16(), source.bfloat16()
    with autocast("bf16", "cpu"):
        half = genetic_attention(q16, s16, layout)
    assert half.dtype == torch.bfloat16
    assert torch.equal(half, genetic_attention(q16.float(), s16.float(), layout).bfloat16())


def test_fp16_scaler_skips_an_overflowing_step_and_round_trips_its_state():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    amp = MixedPrecision("fp16", "cpu")
    before = [p.detach().clone() for p in model.parameters()]
    with amp.autocast():
        loss = model(torch.randn(3, 4)).float().sum() * float("inf")
    amp.step(loss, optimizer, model.parameters(), grad_clip=1.0)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters())), "an inf gradient must not step"
    state = amp.state_dict()
    assert state["scale"] == 2.0 ** 15   # halved from 2**16
    json.dumps(state)                     # plain numbers: it goes into state.json
    again = MixedPrecision("fp16", "cpu")
    again.load_state_dict(state)
    assert again.state_dict() == state
    assert MixedPrecision("bf16", "cpu").state_dict() is None and MixedPrecision("fp32", "cpu").scaler is None


def test_precision_is_validated_and_read_from_the_card():
    with pytest.raises(ConfigError, match=r"precision = 'fp8' is invalid: must be one of fp32, bf16, fp16"):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match=r"compile = 'yes' is invalid: must be true or false"):
        TrainConfig(compile="yes")
    card = tiny_card("tiny-bf16", precision="bf16", compile=False)
    from hkt_core.train.api import resolve

    spec = resolve(card, "baseline", manager=manager_with(card), out="unused")
    assert spec.train.precision == "bf16" and spec.train.compile is False
    assert resolve(card, "baseline", manager=manager_with(card), out="unused", precision="fp16").train.precision == "fp16"


class Interrupt(Exception):
    pass


def _stop_after_first(epoch: int, record: dict) -> None:
    if epoch == 1:
        raise Interrupt


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_run_keeps_float32_checkpoints_and_resumes_exactly(precision, tmp_path):
    card = tiny_card("tiny-bn", batchnorm=True, optimizer="adamw", lr=0.01)
    manager = manager_with(card)
    common = dict(manager=manager, epochs=2, seed=5, precision=precision, grad_clip=1.0)
    a = hkt_core.train("tiny-bn", "hkt", out=tmp_path / "A", **common)
    with pytest.raises(Interrupt):
        hkt_core.train("tiny-bn", "hkt", out=tmp_path / "B", callbacks=[_stop_after_first], **common)
    b = hkt_core.train("tiny-bn", "hkt", out=tmp_path / "B", resume=True, **common)
    ta, tb = load_file(a.path / "last.safetensors"), load_file(b.path / "last.safetensors")
    assert set(ta) == set(make_child(batchnorm=True).state_dict())
    assert all(t.dtype == torch.float32 for k, t in ta.items() if "num_batches" not in k)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    ma, mb = load_file(a.path / "method.safetensors"), load_file(b.path / "method.safetensors")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert a.summary["precision"] == precision and a.summary["test"] == b.summary["test"]
    state = json.loads((a.path / "state.json").read_text())
    assert ("scaler" in state) == (precision == "fp16")
    # the run trained in reduced precision: it differs from the float32 run
    c = hkt_core.train("tiny-bn", "hkt", out=tmp_path / "C", **{**common, "precision": "fp32"})
    assert not all(torch.equal(ta[k], load_file(c.path / "last.safetensors")[k]) for k in ta)
    # and resuming it in another precision is refused, naming the setting
    with pytest.raises(ConfigError, match=rf"train.precision: run has '{precision}', now 'fp32'"):
        hkt_core.train("tiny-bn", "hkt", out=tmp_path / "B", resume=True, **{**common, "precision": "fp32"})
