"""A method is one file: the ``methods`` package keeps serving every name the old module did, the
``@method`` table is the one list of the core's methods (the core plugin registers it through the
hook a plugin uses), and a method's options are a typed, frozen record checked in one line."""

from __future__ import annotations

import attrs
import pytest

import hkt_core
from hkt_core.errors import ConfigError

#: every public name ``hkt_core/train/methods.py`` defined or imported before it became a package
OLD_NAMES = {"ALIGNMENT_CHOICES", "BUILTIN_METHODS", "BaselineMethod", "FITNET_HINT_WEIGHT", "FitNetKDMethod",
             "FitNetMethod", "HKTKDMethod", "HKTMethod", "KDMethod", "Method", "MethodContext", "ParentMethod",
             "StepOutput", "method_alignment"}


def test_the_package_serves_the_old_module_s_names():
    import importlib

    methods = importlib.import_module("hkt_core.train.methods")   # hkt_core.train is also the function
    assert OLD_NAMES <= set(dir(methods))
    assert methods.FitNetMethod is hkt_core.lookup("methods", "fitnet")


def test_one_table_of_the_core_s_methods_registered_through_the_hook():
    from hkt_core.train.methods import BUILTIN_METHODS, methods_with_role
    from hkt_core.train.preflight import CORE_METHODS

    assert list(BUILTIN_METHODS) == ["parent", "baseline", "kd", "dkd", "hkt", "hkt-kd", "attention-transfer",
                                     "fitnet", "fitnet-kd"]
    assert hkt_core.defined_methods("hkt_core") == BUILTIN_METHODS
    assert methods_with_role("every-pair") == tuple(CORE_METHODS)
    assert methods_with_role("demo") == ("baseline", "kd", "hkt")
    registry = hkt_core.registry("methods")
    for name, cls in BUILTIN_METHODS.items():
        assert registry.entry(name).plugin == "core" and registry.get(name) is cls
        assert cls.method_name == name


def test_a_plugin_registers_its_decorated_methods_through_the_hook():
    class Smooth(hkt_core.Method):
        def training_step(self, inputs, target):
            raise NotImplementedError

    Smooth.__module__ = "my_plugin.methods"   # as if defined in a plugin's module
    hkt_core.method("smooth-test")(Smooth)
    assert hkt_core.defined_methods("my_plugin") == {"smooth-test": Smooth}
    assert "smooth-test" not in hkt_core.defined_methods("hkt_core")

    @hkt_core.registers()
    def hkt_register_methods():
        return hkt_core.defined_methods("my_plugin")

    import types

    from hkt_core import builtins

    manager = hkt_core.get_plugin_manager(autoload=False, plugins={
        "core": builtins, "mine": types.SimpleNamespace(hkt_register_methods=hkt_register_methods)})
    assert manager.lookup("methods", "smooth-test") is Smooth
    assert manager.registry("methods").entry("smooth-test").plugin == "mine"
    with pytest.raises(TypeError, match="decorates a Method subclass"):
        hkt_core.method("x")(object)
    with pytest.raises(ValueError, match="unknown role"):
        hkt_core.method("x", roles=("core",))


def test_options_are_a_typed_frozen_record_with_one_line_errors():
    fitnet = hkt_core.lookup("methods", "fitnet")
    assert fitnet.default_options == {"hint_weight": 1.0, "alignment": "auto"}
    # fitnet-kd's record is fitnet's plus KD's temperature and weight (formerly train.kd_*)
    assert issubclass(hkt_core.lookup("methods", "fitnet-kd").Options, fitnet.Options)
    assert hkt_core.lookup("methods", "fitnet-kd").default_options == {
        "hint_weight": 1.0, "alignment": "auto", "temperature": 4.0, "weight": 0.5}
    from hkt_core.train.method import read_options

    record = read_options(fitnet.Options, {"hint_weight": 3}, "fitnet")
    assert record.hint_weight == 3.0 and isinstance(record.hint_weight, float)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.hint_weight = 1.0
    with pytest.raises(ConfigError, match=r"^method 'fitnet' has no option\(s\) beta; it takes: alignment, hint_weight$"):
        read_options(fitnet.Options, {"beta": 1}, "fitnet")
    with pytest.raises(ConfigError, match=r"^method option hint_weight = True is invalid: a number >= 0$"):
        read_options(fitnet.Options, {"hint_weight": True}, "fitnet")
    with pytest.raises(ConfigError, match=r"^method option alignment = 'x' is invalid: 'auto' "):
        read_options(fitnet.Options, {"alignment": "x"}, "fitnet")
