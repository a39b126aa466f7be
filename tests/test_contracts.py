"""The contract checks of hkt_core.testing run over every registration in this environment:
the core's built-ins and every installed plugin's."""

from __future__ import annotations

import pytest
import torch

import hkt_core
from hkt_core.testing import contracts

MANAGER = hkt_core.get_plugin_manager()
CASES = [(kind, name) for kind in contracts.CHECKED_KINDS if kind != "metrics"
         for name in MANAGER.registry(kind).names()]



@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_registered_entry_honours_its_contract(kind, name):
    contracts.check_entry(kind, name, MANAGER)


def test_metrics_add_up_across_batches():
    contracts.check_metrics_of_tasks(MANAGER)


def test_every_kind_has_entries_from_the_core():
    for kind in ("transfers", "mixtures", "extractors", "losses", "metrics", "methods", "adapters"):
        assert any(e.plugin == "core" for e in MANAGER.registry(kind).entries()), kind


def test_a_broken_mixture_fails_its_contract():
    class Shrinks(torch.nn.Module):
        def __init__(self, lam=0.6, tokens="auto"):
            super().__init__()

        def forward(self, receiver, donor):
            return receiver.mean(dim=1)

    with pytest.raises(AssertionError, match="mixture 'shrinks': receiver"):
        contracts.check_mixture("shrinks", Shrinks)


def test_a_transfer_ignoring_shapes_fails_its_contract():
    class Wrong(torch.nn.Module):
        def __init__(self, source, target):
            super().__init__()

        def forward(self, x):
            return x

    with pytest.raises(AssertionError, match="transfer 'wrong'"):
        contracts.check_transfer("wrong", Wrong)
