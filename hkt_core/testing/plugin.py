"""pytest plugin for plugin authors (installed with ``hkt``, entry point ``pytest11``).

Fixtures:

- ``hkt_home``: a private ``$HKT_HOME`` for the test, with the default plugin manager reset
  before and after, so user cards and cached parents never leak between tests.
- ``hkt_manager``: a fresh plugin manager with every installed plugin loaded.
- ``hkt_contracts``: the :mod:`hkt_core.testing.contracts` module, e.g.
  ``hkt_contracts.check_entry("mixtures", "my_mixture", hkt_manager)``.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def hkt_home(tmp_path, monkeypatch):
    from ..plugins.host import reset_default_manager

    home = tmp_path / "hkt_home"
    home.mkdir()
    monkeypatch.setenv("HKT_HOME", str(home))
    reset_default_manager()
    yield home
    reset_default_manager()


@pytest.fixture
def hkt_manager():
    from ..plugins.host import get_plugin_manager

    return get_plugin_manager()


@pytest.fixture
def hkt_contracts():
    from . import contracts

    return contracts
