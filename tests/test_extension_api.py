"""The public extension API: the classes plugin authors use, hooks called through pluggy, @registers."""

from __future__ import annotations

import types

import pytest
from torch import nn

import hkt_core
from hkt_core import builtins, hookimpl, registers

API = ["Task", "Metric", "Mixture", "Transfer", "Method", "MethodContext", "StepOutput", "DatasetBundle",
       "Registrar", "registers", "TrainingDiverged"]
HOMES = {"Task": "hkt_core.tasks.task", "Metric": "hkt_core.tasks.metrics", "Mixture": "hkt_core.etm.mixtures",
         "Transfer": "hkt_core.etm.transfers", "Method": "hkt_core.train.method",
         "MethodContext": "hkt_core.train.method", "StepOutput": "hkt_core.train.method",
         "DatasetBundle": "hkt_core.data", "Registrar": "hkt_core.plugins.registry", "TrainingDiverged": "hkt_core.errors"}


def core(**more):
    return hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins, **more})


@pytest.mark.parametrize("name", API)
def test_extension_classes_import_from_hkt_core(name):
    import importlib

    obj = getattr(hkt_core, name)
    assert name in hkt_core.__all__
    if name in HOMES:
        assert obj is getattr(importlib.import_module(HOMES[name]), name)


def test_every_builtin_operator_task_metric_and_method_uses_the_base_classes():
    manager = core()
    shapes = (((4,), (3,)), ((4, 2, 2), (3, 4, 4)), ((5,), (5,)), ((4,), (3, 2, 2)), ((4, 2, 2), (3,)),
              ((4, 4), (3, 2, 2)), ((4, 2, 2), (3, 5)))
    for name in manager.registry("transfers").names():
        factory = manager.lookup("transfers", name)
        built = []
        for source, target in shapes:
            try:
                built.append(factory(source, target))
            except ValueError:      # shapes this transfer does not map (it says which it does)
                continue
        assert built and all(isinstance(t, hkt_core.Transfer) for t in built), name
    assert all(issubclass(manager.lookup("mixtures", n), hkt_core.Mixture) for n in manager.registry("mixtures").names())
    assert all(issubclass(manager.lookup("methods", n), hkt_core.Method) for n in manager.registry("methods").names())
    assert all(isinstance(manager.lookup("losses", n), hkt_core.Task) for n in manager.registry("losses").names())
    assert all(isinstance(manager.lookup("metrics", n), hkt_core.Metric) for n in manager.registry("metrics").names())


def test_transfer_base_checks_the_shapes():
    with pytest.raises(ValueError, match="no batch dimension"):
        hkt_core.Transfer((0, 3), (3,))
    t = hkt_core.Transfer([4, 2], (3,))
    assert (t.source_shape, t.target_shape) == ((4, 2), (3,))


# -- hooks through pluggy ----------------------------------------------------------------------------
def _models_plugin(**models):
    @hookimpl
    def hkt_register_models(registry):
        for name, factory in models.items():
            registry.add(name, factory)

    return types.SimpleNamespace(hkt_register_models=hkt_register_models)


def test_hook_wrappers_and_tracing_see_each_plugins_registration():
    seen = []

    @hookimpl(wrapper=True)
    def hkt_register_models(registry):
        seen.append(repr(registry))
        return (yield)

    watcher = types.SimpleNamespace(hkt_register_models=hkt_register_models)
    manager = hkt_core.get_plugin_manager(autoload=False, plugins={"core": builtins, "watcher": watcher})
    calls = []
    manager.pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name), lambda *a: None)
    info = manager.register(_models_plugin(one=nn.Identity), "mine")
    assert info.ok and manager.lookup("models", "one") is nn.Identity
    assert seen == ["<Registrar models for plugin 'mine'>"]
    assert "hkt_register_models" in calls


def test_registration_stays_all_or_nothing_and_isolated():
    def broken(registry):
        registry.add("half", nn.Identity)
        raise RuntimeError("boom")

    manager = core(good=_models_plugin(fine=nn.Identity))
    info = manager.register(types.SimpleNamespace(hkt_register_models=hookimpl(broken)), "broken")
    assert not info.ok and "boom" in info.error
    assert "half" not in manager.registry("models") and "fine" in manager.registry("models")
    # the failed plugin's hooks are gone: the next plugin's registration does not run them again
    assert manager.register(_models_plugin(later=nn.Identity), "later").ok


# -- @registers ----------------------------------------------------------------------------------
def test_registers_adds_what_the_function_returns_with_shared_and_own_metadata():
    @registers(task="toy")
    def hkt_register_models():
        return [("a", nn.Identity), ("b", nn.Linear, {"description": "a linear map", "task": "other"})]

    @registers()
    def hkt_register_datasets():
        return {"d": dict}

    plugin = types.SimpleNamespace(hkt_register_models=hkt_register_models, hkt_register_datasets=hkt_register_datasets)
    manager = core(toy=plugin)
    a, b = manager.registry("models").entry("a"), manager.registry("models").entry("b")
    assert (a.obj, a.metadata, a.plugin) == (nn.Identity, {"task": "toy"}, "toy")
    assert (b.description, b.metadata) == ("a linear map", {"task": "other"})
    assert manager.lookup("datasets", "d") is dict


def test_registers_refuses_a_misnamed_hook_and_bad_items_fail_the_plugin_only():
    with pytest.raises(TypeError, match="hkt_register_<kind>"):
        @registers()
        def register_models():
            return {}

    @registers()
    def hkt_register_models():
        return ["not a pair"]

    manager = core()
    info = manager.register(types.SimpleNamespace(hkt_register_models=hkt_register_models), "bad")
    assert not info.ok and "mapping name -> object" in info.error
