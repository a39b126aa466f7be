"""pytest plugin for plugin authors (entry point ``pytest11``): fixtures over the registries."""

from __future__ import annotations

import pytest


@pytest.fixture
def hkt_manager():
    """A fresh plugin manager with every installed plugin loaded."""
    from hkt_core.plugins import get_plugin_manager

    return get_plugin_manager()
