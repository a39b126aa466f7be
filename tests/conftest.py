"""Shared fixtures: every test gets its own HKT_HOME and a fresh default plugin manager."""

from __future__ import annotations

import pytest

import hkt_core


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("hkt_home")
    monkeypatch.setenv("HKT_HOME", str(home))
    monkeypatch.delenv("HKT_DISABLE_PLUGINS", raising=False)
    hkt_core.reset_default_manager()
    yield home
    hkt_core.reset_default_manager()
