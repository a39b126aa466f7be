"""A card states its inputs' dtypes where no data is at hand (``input_dtypes``): token-id models of
one's own align from the CLI and build a Family; bad dtypes fail in one line listing the allowed."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from hkt_core.adapters import GenericAdapter, example_inputs_for
from hkt_core.cli.main import main
from hkt_core.errors import ConfigError
from hkt_core.pairs import INPUT_DTYPES, PairCard

MODELS = '''
import torch
from torch import nn


class Tokens(nn.Module):
    """Token ids (B, T) -> class scores: embedding, a layer per depth, mean over tokens."""

    def __init__(self, width: int = 16, depth: int = 2, vocab: int = 11, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.GELU())
                                    for _ in range(depth))
        self.head = nn.Linear(width, classes)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = x + layer(x)
        return self.head(x.mean(1))


def big():
    return Tokens(32, 3)


def small():
    return Tokens(8, 1)
'''


def _card(**extra) -> dict:
    return {"name": "tok", "task": "classification", "parent": "m:big", "child": "m:small",
            "input_shapes": [[2, 12]], "dataset": "digits", **extra}


@pytest.mark.parametrize("dtypes, message", [
    (["int65"], "each one of float32, float64"),
    ([3], "each one of"),
    (["int64", "int64"], "give one dtype per input (1 input_shapes)"),
])
def test_bad_input_dtypes_fail_in_one_line_listing_the_allowed(dtypes, message):
    with pytest.raises(ConfigError) as info:
        PairCard.from_dict(_card(input_dtypes=dtypes))
    text = str(info.value)
    assert message in text and "\n" not in text and all(d in text for d in INPUT_DTYPES)


def test_input_dtypes_round_trip_and_default_to_none():
    card = PairCard.from_dict(_card(input_dtypes=["int64"]))
    assert card.input_dtypes == ("int64",)
    assert "input_dtypes" not in PairCard.from_dict(_card()).to_dict()
    again = PairCard.from_dict({**card.to_dict()})
    assert again == card and again.to_dict()["input_dtypes"] == ["int64"]


def test_example_inputs_in_the_stated_dtypes():
    model = torch.nn.Linear(3, 2)
    floats, ids, mask = example_inputs_for(model, [(2, 3), (2, 5), (2, 5)], ("float64", "int64", "bool"),
                                           adapter=GenericAdapter())
    reference = GenericAdapter().example_inputs(model, [(2, 3)])[0]
    assert floats.dtype == torch.float64 and torch.equal(floats, reference.double())
    assert ids.dtype == torch.int64 and torch.equal(ids, torch.ones(2, 5, dtype=torch.long))   # a valid id
    assert mask.dtype == torch.bool and bool(mask.all())                                       # unmasked
    assert example_inputs_for(model, [(2, 3)], (), adapter=GenericAdapter())[0].dtype == torch.float32


def test_a_token_model_of_ones_own_aligns_from_the_cli_with_input_dtypes(hkt_home, tmp_path, capsys, monkeypatch):
    (tmp_path / "m.py").write_text(textwrap.dedent(MODELS), encoding="utf-8")
    lines = ['name = "tok-own"', 'task = "classification"', 'parent = "m:big"', 'child = "m:small"',
             'dataset = "digits"', "input_shapes = [[2, 12]]", "stages = 3"]
    card = tmp_path / "tok-own.toml"
    card.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    # without a dtype the example inputs are random floats, which an embedding refuses
    from hkt_core.pairs import add_user_card

    add_user_card(card)
    from hkt_core.plugins import reset_default_manager

    reset_default_manager()
    assert main(["align", "tok-own", "--json"]) == 2
    assert "Expected tensor for argument #1 'indices'" in capsys.readouterr().err
    card.write_text("\n".join(lines + ['input_dtypes = ["int64"]']) + "\n", encoding="utf-8")
    add_user_card(card, force=True)
    reset_default_manager()
    assert main(["align", "tok-own", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["pairs"]) == 3 and data["pairs"][0]["parent_kind"] == "tokens"

    from hkt_core.align import align
    from hkt_core.family import Family
    from hkt_core.models import build_model
    from hkt_core.plugins import default_manager

    manager = default_manager()
    stored = manager.lookup("pairs", "tok-own")
    parent, child = (build_model(ref, manager) for ref in (stored.parent, stored.child))
    example = example_inputs_for(parent, stored.input_shapes, stored.input_dtypes, manager)
    family = Family(parent, child, align(parent, child, example, stages=3, manager=manager), manager=manager)
    ids = torch.randint(0, 11, (5, 7))   # another batch size and sequence length
    family.eval()
    with torch.no_grad():
        torch.testing.assert_close(family(ids).native, child(ids), rtol=0, atol=1e-6)
