"""Discovery through the installed entry point, and the ``hkt inhernet report`` command."""

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

import hkt_core
from hkt_core.cli.main import build_parser, main
from hkt_core.plugins import get_plugin_manager


def test_installed_entry_point_registers_the_method_and_the_command():
    (entry_point,) = [ep for ep in metadata.entry_points(group="hkt") if ep.name == "inhernet"]
    assert entry_point.value == "hkt_inhernet.plugin"
    assert entry_point.dist.name == "hkt-inhernet"
    manager = get_plugin_manager()
    info = manager.plugins["inhernet"]
    assert info.ok, info.error
    assert info.registered == {"methods": ["inherit"], "commands": ["inhernet"]}
    from hkt_inhernet import InheritMethod
    from hkt_inhernet.cli import configure

    assert manager.lookup("methods", "inherit") is InheritMethod
    assert manager.lookup("commands", "inhernet") is configure
    from hkt_inhernet.cli import run_report

    args = build_parser(manager).parse_args(["inhernet", "report", "some_model", "--budget", "0.25"])
    assert args.handler is run_report and args.budget == 0.25


def test_disabling_the_plugin_removes_it():
    manager = get_plugin_manager(disabled={"inhernet"})
    assert manager.plugins["inhernet"].disabled
    assert "inherit" not in manager.registry("methods")


@pytest.fixture
def fresh_manager():
    hkt_core.reset_default_manager()
    yield
    hkt_core.reset_default_manager()


def test_report_on_a_small_model(models_on_path, fresh_manager, capsys):
    assert main(["inhernet", "report", f"{models_on_path}:small_cnn", "--rank", "4"]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "4/32" in out and "skipped: first convolution" in out
    assert "rank=4, heads=2: 3 of 5 layers compressed" in out


def test_report_json_with_weights_budget_and_model_options(models_on_path, fresh_manager, capsys, tmp_path):
    from inhernet_models import small_cnn

    model = small_cnn(num_classes=3)
    path = tmp_path / "parent.safetensors"
    save_file(model.state_dict(), str(path))
    code = main(["inhernet", "report", f"{models_on_path}:small_cnn", "--weights", str(path),
                 "--budget", "0.5", "--heads", "3", "--model-option", "num_classes=3", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params_after"] <= 0.5 * data["params_before"]
    assert data["heads"] == 3 and data["policy"] == "budget=0.5, heads=3"
    assert data["layers"][-1]["weight_shape"] == [3, 64]


def test_report_defaults_to_an_energy_rule(models_on_path, fresh_manager, capsys):
    assert main(["inhernet", "report", f"{models_on_path}:small_cnn", "--energy", "0.3"]) == 0
    assert "energy=0.3" in capsys.readouterr().out
    assert main(["inhernet", "report", f"{models_on_path}:small_cnn"]) == 0
    assert "energy=0.9, heads=2" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--weights", "missing.safetensors"], "no such weights file"),
    (["--energy", "2"], r"energy must be a fraction in \(0, 1\]"),
    (["--model-option", "num_classes"], "expected KEY=VALUE"),
])
def test_report_errors_exit_2_with_a_reason(models_on_path, fresh_manager, capsys, extra, message):
    assert main(["inhernet", "report", f"{models_on_path}:small_cnn", *extra]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_report_refuses_weights_of_another_model(models_on_path, fresh_manager, capsys, tmp_path):
    from inhernet_models import small_cnn

    path = tmp_path / "other.safetensors"
    save_file(small_cnn(width=8).state_dict(), str(path))
    assert main(["inhernet", "report", f"{models_on_path}:small_cnn", "--weights", str(path)]) == 2
    assert "does not fit the model" in capsys.readouterr().err


def test_rank_rules_are_mutually_exclusive(models_on_path, fresh_manager, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["inhernet", "report", f"{models_on_path}:small_cnn", "--rank", "2", "--energy", "0.5"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.subprocess
def test_console_script(models_on_path):
    hkt = Path(sys.executable).with_name("hkt")
    if not hkt.exists():
        hkt = shutil.which("hkt")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run([str(hkt), "inhernet", "report", "inhernet_models:small_cnn", "--rank", "2"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "rank=2, heads=2" in result.stdout
