"""The pair cards hkt-zoo ships: registered when transformers is installed, and each passes
``hkt pairs check`` (data, both models, alignment and one step of every method) as a user runs it."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from hkt_core.cli.main import main


def test_the_transformer_card_is_registered_with_its_zoo_models(hkt_manager):
    card = hkt_manager.lookup("pairs", "recall-bert4-bert2")
    assert (card.parent, card.child, card.dataset) == ("transformers", "transformers", "token-recall")
    assert card.input_dtypes == ("int64", "int64") or list(card.input_dtypes) == ["int64", "int64"]
    # the parent learns from its own, larger sample; the children from 800 sequences
    assert card.parent_dataset_options["n_train"] > card.dataset_options["n_train"]


def test_the_transformer_card_passes_pairs_check(hkt_home, capsys):
    assert main(["pairs", "check", "recall-bert4-bert2", "--methods", "baseline,kd,hkt"]) == 0
    out = capsys.readouterr().out
    assert "pair recall-bert4-bert2: ok" in out
    assert "140,420 parameters" in out and "5,316 parameters" in out
    assert "mixing at bert.encoder.layer." in out
