"""docs/writing-a-plugin.md, "A new method in one file", runs as written: its file registers both
methods through the hook, each honours the method contract, a bad option is the line the guide
shows, and a run of each trains, records its options and resumes exactly."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

import hkt_core
from hkt_core.errors import ConfigError
from hkt_core.testing import contracts
from method_runs import resumes_exactly
from test_train_support import cards_plugin, tiny_card

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-a-plugin.md"
TEXT = DOC.read_text(encoding="utf-8")
SECTION = TEXT[TEXT.index("## A new method in one file"):TEXT.index("## One section per kind")]


@pytest.fixture
def guide_plugin(tmp_path, monkeypatch):
    """The guide's file as an installed plugin's module, with the tiny test card beside it."""
    source = re.search(r"<!-- file: my_methods.py -->\n```python\n(.*?)```", SECTION, flags=re.S).group(1)
    (tmp_path / "my_methods.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_methods", raising=False)
    module = importlib.import_module("my_methods")
    from hkt_core import builtins

    card = tiny_card("guide-pair")
    manager = hkt_core.get_plugin_manager(autoload=False, plugins={
        "core": builtins, "mine": module, "cards": cards_plugin(card)})
    return module, manager, card


def test_the_file_registers_both_methods_through_the_hook(guide_plugin):
    module, manager, _ = guide_plugin
    assert manager.plugins["mine"].ok, manager.plugins["mine"].error
    assert manager.plugins["mine"].registered == {"methods": ["logit-match", "cosine-hint"]}
    assert manager.lookup("methods", "logit-match") is module.LogitMatch
    assert module.LogitMatch.method_name == "logit-match" and module.LogitMatch.default_options == {"weight": 1.0}
    for name in ("logit-match", "cosine-hint"):
        contracts.check_entry("methods", name, manager)


def test_a_bad_option_is_the_line_the_guide_shows(guide_plugin, tmp_path):
    _, manager, card = guide_plugin
    shown = [line for line in re.findall(r"`(method .*?)`", SECTION) if "invalid" in line or "has no option" in line]
    assert len(shown) == 2, shown
    for line, option in zip(shown, ({"weight": -1}, {"beta": 1})):
        with pytest.raises(ConfigError) as info:
            hkt_core.train(card.name, "logit-match", manager=manager, out=tmp_path / "run", method_options=option,
                           epochs=1)
        assert line in str(info.value)   # the pre-flight names the pair and the method before it


@pytest.mark.parametrize("name, logged", [("logit-match", "match"), ("cosine-hint", "hint")])
def test_each_method_trains_and_resumes_exactly(guide_plugin, tmp_path, isolated_home, monkeypatch, name, logged):
    module, _, card = guide_plugin
    import method_runs

    # resumes_exactly builds its manager from the installed plugins and the card: add the guide's file
    monkeypatch.setattr(method_runs, "manager_with", lambda *cards: hkt_core.get_plugin_manager(
        plugins={"mine": module, "cards": cards_plugin(*cards)}))
    run = resumes_exactly(card, name, tmp_path, logged, weight=0.5)
    assert run.config["method_options"] == {"weight": 0.5}
