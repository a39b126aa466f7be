"""Registries: strict duplicates, wildcard listing, closest-name errors, all-or-nothing plugins."""

from __future__ import annotations

import pytest

import hkt_core
from hkt_core.errors import RegistryError
from hkt_core.plugins.registry import Registry


class Plugin:
    """A plugin object registering mixtures, optionally failing after its first registration."""

    def __init__(self, names, fail_after_first=False):
        self.names = names
        self.fail_after_first = fail_after_first

    @hkt_core.hookimpl
    def hkt_register_mixtures(self, registry):
        for i, name in enumerate(self.names):
            registry.add(name, object, description=f"mixture {name}")
            if self.fail_after_first and i == 0:
                raise RuntimeError("plugin broke midway")


class ModelPlugin:
    @hkt_core.hookimpl
    def hkt_register_models(self, registry):
        registry.add("tiny_model", dict)


def manager(**plugins):
    return hkt_core.get_plugin_manager(autoload=False, plugins=plugins)


def test_registry_add_get_and_wildcards():
    reg = Registry("models")
    for name in ["resnet20", "resnet110", "mlp"]:
        reg.add(name, name.upper(), plugin="p")
    assert reg.get("mlp") == "MLP"
    assert reg.names("resnet*") == ["resnet110", "resnet20"]
    assert reg.names("*") == ["mlp", "resnet110", "resnet20"]
    assert reg.names("vgg*") == []
    assert "mlp" in reg and len(reg) == 3


def test_duplicate_name_names_both_plugins():
    reg = Registry("mixtures")
    reg.add("ga", 1, plugin="core")
    with pytest.raises(RegistryError, match=r"'ga' is registered twice: first by plugin 'core', again by plugin 'mine'"):
        reg.add("ga", 2, plugin="mine")
    assert reg.get("ga") == 1


def test_duplicate_across_plugins_keeps_first_and_reports_second():
    m = manager(first=Plugin(["blend"]), second=Plugin(["other", "blend"]))
    assert m.lookup("mixtures", "blend") is object
    assert m.registry("mixtures").entry("blend").plugin == "first"
    second = m.plugins["second"]
    assert "first by plugin 'first'" in second.error and "again by plugin 'second'" in second.error
    # all or nothing: 'other' was staged before the failure and must not be kept
    assert "other" not in m.registry("mixtures")


def test_failing_hook_keeps_none_of_its_registrations_and_others_work():
    m = manager(broken=Plugin(["a", "b"], fail_after_first=True), fine=Plugin(["c"]), models=ModelPlugin())
    assert m.registry("mixtures").names() == ["c"]
    assert m.plugins["broken"].error.startswith("RuntimeError: plugin broke midway")
    assert m.plugins["broken"].registered == {}
    assert m.plugins["fine"].registered == {"mixtures": ["c"]}
    assert m.lookup("models", "tiny_model") is dict


def test_unknown_name_lists_closest():
    m = manager(p=Plugin(["gated", "genetic", "add"]))
    with pytest.raises(RegistryError) as info:
        m.lookup("mixtures", "gate")
    message = str(info.value)
    assert "unknown mixtures 'gate'" in message and "gated" in message


def test_unknown_kind_is_an_error_listing_kinds():
    with pytest.raises(RegistryError, match="unknown kind 'mixture'.*mixtures"):
        manager().registry("mixture")


def test_empty_name_refused():
    with pytest.raises(RegistryError, match="non-empty string"):
        Registry("models").add("  ", 1)


def test_core_plugin_registers_through_its_entry_point():
    m = hkt_core.get_plugin_manager()
    core = m.plugins["core"]
    assert core.ok and core.distribution == "hkt"
    assert "generic" in core.registered["adapters"]


def test_disabling_plugins_by_entry_point_name(monkeypatch):
    monkeypatch.setenv("HKT_DISABLE_PLUGINS", "core, nonexistent")
    m = hkt_core.get_plugin_manager()
    assert m.plugins["core"].disabled
    assert "generic" not in m.registry("adapters")


def test_module_level_lookup_uses_a_resettable_default():
    first = hkt_core.default_manager()
    assert hkt_core.default_manager() is first
    hkt_core.reset_default_manager()
    assert hkt_core.default_manager() is not first
    assert isinstance(hkt_core.lookup("adapters", "generic"), hkt_core.GenericAdapter)
