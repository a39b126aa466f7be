"""What hkt trusts: `module:callable` references from the command line, cards and run folders."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

import hkt_core
from hkt_core.cli.main import main
from hkt_core.config import read_toml, to_toml
from hkt_core.errors import ConfigError
from hkt_core.models import build_model
from hkt_core.plugins import default_manager
from hkt_core.trust import Origin, UntrustedReference, resolve_reference, run_origin, scope
from test_train_support import card_dict, manager_with, tiny_card

REFUSED = ["os:system", "builtins:eval", "subprocess:run", "torch.hub:load", "numpy:load"]


@pytest.fixture
def calls(monkeypatch):
    """Every dangerous callable the refused references name, replaced by a recorder."""
    import builtins
    import subprocess as sp

    import numpy
    import torch.hub

    seen: list[str] = []

    def recorder(name, original):
        def call(*args, **kwargs):
            if not args or "command" in kwargs:  # how hkt would call a factory: options by keyword
                seen.append(name)
                return None
            return original(*args, **kwargs)  # the interpreter's own uses (attrs builds classes with eval)
        return call

    for owner, name in ((os, "system"), (builtins, "eval"), (sp, "run"), (torch.hub, "load"), (numpy, "load")):
        monkeypatch.setattr(owner, name, recorder(name, getattr(owner, name)))
    return seen


@pytest.mark.parametrize("ref", REFUSED)
def test_standard_library_and_installed_packages_are_refused_before_any_call(ref, calls):
    with pytest.raises(UntrustedReference, match=ref.replace(".", r"\.")) as info:
        build_model(ref, None, command="touch should-not-exist")
    assert "\n" not in str(info.value)
    assert calls == []


@pytest.mark.parametrize("ref", REFUSED)
def test_refused_on_the_command_line_in_one_line(ref, calls, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["align", ref, "test_train_support:make_child", "--input-shape", "1,1,8,8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ref in err and "refused" in err
    assert calls == []


def test_user_module_reaching_the_standard_library_is_refused(tmp_path, monkeypatch):
    (tmp_path / "sneaky_mod.py").write_text("import os\nfrom os import system\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for ref in ("sneaky_mod:os.system", "sneaky_mod:system"):
        with pytest.raises(UntrustedReference, match="refused"):
            resolve_reference(ref)


def test_user_module_on_sys_path_and_registered_plugin_code_resolve(capsys, monkeypatch):
    monkeypatch.setattr(hkt_core.trust, "_deprecations_said", set())  # said once per process
    assert resolve_reference("test_train_support:make_child")().__class__.__name__ == "TinyCNN"
    manager = default_manager()
    # a plugin's object resolves only as what the plugin registered, under its registered name
    factory = resolve_reference("hkt_vision.models.convnet:digits_cnn_small", kind="models", manager=manager)
    assert factory is manager.lookup("models", "digits_cnn_small")
    assert "deprecated" in capsys.readouterr().err


def test_malformed_reference_is_one_line():
    for ref in ("a:b:c", "mod:", "1mod:f", "mod:f()"):
        with pytest.raises(ConfigError, match="expected 'module:callable'"):
            resolve_reference(ref)


def _own_pair_folder(tmp_path, module: str):
    """A user's model file and card in one folder, not on sys.path."""
    folder = tmp_path / "mypair"
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent("""
        from test_train_support import TinyCNN, make_dataset

        def parent(batchnorm=False):
            return TinyCNN(8, batchnorm)

        def child(batchnorm=False):
            return TinyCNN(4, batchnorm)

        def data(**options):
            return make_dataset(**options)
    """), encoding="utf-8")
    data = card_dict("own-pair")
    data.update(parent=f"{module}:parent", child=f"{module}:child", dataset=f"{module}:data")
    (folder / "card.toml").write_text(to_toml(data), encoding="utf-8")
    return folder


def test_module_beside_an_added_card_resolves_from_another_folder(tmp_path, monkeypatch, capsys):
    folder = _own_pair_folder(tmp_path, "beside_card_models")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["pairs", "add", str(folder / "card.toml")]) == 0
    stored = read_toml(hkt_core.pairs.user_pairs_dir() / "own-pair.toml")
    assert stored["source_folder"] == str(folder.resolve())
    capsys.readouterr()
    assert main(["align", "own-pair", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"][-1]["child"] == "head"


def test_card_naming_os_system_runs_nothing_on_align(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "X"
    data = card_dict("evil-pair")
    data.update(parent="os:system", parent_options={"command": f"touch {marker}"})
    folder = hkt_core.pairs.user_pairs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evil-pair.toml").write_text(to_toml(data), encoding="utf-8")
    hkt_core.reset_default_manager()
    assert main(["align", "evil-pair"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'os:system'" in err
    assert not marker.exists()


@pytest.fixture
def finished_run(tmp_path):
    manager = manager_with(tiny_card())
    return hkt_core.train("tiny-pair", "baseline", manager=manager, out=tmp_path / "run", epochs=1).path


def _edit_card(run_dir, **changes):
    config = read_toml(run_dir / "config.toml")
    config["card"].update(changes)
    (run_dir / "config.toml").write_text(to_toml(config), encoding="utf-8")


def test_edited_run_folder_card_runs_nothing_on_eval_or_export(finished_run, tmp_path, capsys):
    marker = tmp_path / "X"
    _edit_card(finished_run, child="os:system", child_options={"command": f"touch {marker}"})
    for argv in (["eval", str(finished_run)], ["export", str(finished_run)],
                 ["eval", str(finished_run), "--trust-code"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "'os:system'" in err and "refused" in err
    assert not marker.exists()


def test_received_run_folder_imports_only_what_is_importable_here(finished_run, tmp_path, capsys, monkeypatch):
    """A run folder pointing at a module in a folder the user never added: refused unless --trust-code."""
    folder = tmp_path / "received"
    folder.mkdir()
    marker = tmp_path / "imported"
    (folder / "received_models.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).touch()
        from test_train_support import make_child
    """), encoding="utf-8")
    _edit_card(finished_run, child="received_models:make_child", source_folder=str(folder))
    monkeypatch.syspath_prepend(str(tmp_path / "nothing-here"))
    assert main(["eval", str(finished_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-code" in err and "received_models" in err
    assert not marker.exists() and "received_models" not in sys.modules
    assert main(["eval", str(finished_run), "--trust-code"]) == 0
    assert marker.exists()
    sys.modules.pop("received_models", None)


def test_run_of_a_card_the_user_added_needs_no_opt_in(tmp_path):
    origin = run_origin(tmp_path / "run", str(tmp_path / "cards"), trusted_folders={str(tmp_path / "cards")})
    assert not origin.received and origin.search_folders() == (tmp_path / "cards",)
    received = run_origin(tmp_path / "run", str(tmp_path / "cards"))
    assert received.received and received.search_folders() == ()


def test_scope_restores_the_previous_rule():
    inner = Origin("card 'x'", received=True)
    with scope(inner):
        assert hkt_core.trust.current_origin() is inner
    assert hkt_core.trust.current_origin() == Origin()


def test_refused_without_importing_the_target():
    """Refusal happens before import: a standard-library module never imported stays unimported."""
    from hkt_core.trust import check_reference

    assert "antigravity" not in sys.modules  # importing it would open a web browser
    with pytest.raises(UntrustedReference, match="the standard library"):
        check_reference("antigravity:fly")
    with pytest.raises(UntrustedReference):
        resolve_reference("antigravity:fly")
    assert "antigravity" not in sys.modules


def test_resume_takes_the_registered_card_never_the_folders(finished_run, tmp_path):
    """--resume of a folder whose [card] was edited to name os:system runs nothing and names the edit."""
    marker = tmp_path / "X"
    _edit_card(finished_run, parent="os:system", parent_options={"command": f"touch {marker}"})
    with pytest.raises(ConfigError, match=r"card\.parent: run has 'os:system', now 'test_train_support:make_parent'"):
        hkt_core.train("tiny-pair", "baseline", manager=manager_with(tiny_card()), out=finished_run, epochs=2,
                       resume=True)
    assert not marker.exists()
