"""docs/writing-a-plugin.md runs as written: the one-off pair of its "no plugin needed" section
goes through `hkt pairs new` and `hkt pairs check` (and its wrong-class-count error is the line the
guide shows), and every example of its per-kind section honours the contract of its kind."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from hkt_core.cli.main import main
from hkt_core.testing import contracts

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-a-plugin.md"
TEXT = DOC.read_text(encoding="utf-8")

PRELUDE = """
import math
from importlib import resources

import torch
from torch import nn

import hkt_core
from hkt_core.tasks.metrics import Metric
from hkt_core.pairs import register_cards_from
from hkt_core.tasks import ClassificationTask
from hkt_core.train.method import Method, StepOutput
from hkt_tabular.data import wine
from hkt_tabular.models import wine_mlp, wine_transformer
"""


def _file(name: str) -> str:
    return re.search(rf"<!-- file: {re.escape(name)} -->\n```\w*\n(.*?)```", TEXT, flags=re.S).group(1)


def test_the_one_off_pair_goes_through_new_and_check(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_models.py").write_text(_file("examples/my-models/my_models.py"), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    card = folder / "my-pair.toml"
    assert main(["pairs", "new", "my-pair", "--parent", "my_models:big", "--child", "my_models:small",
                 "--dataset", "my_models:table", "-o", str(card)]) == 0
    assert main(["pairs", "check", str(card)]) == 0
    assert capsys.readouterr().out.count("\n") >= 5
    card.write_text(card.read_text().replace("[child_options]\n", "[child_options]\nclasses = 5\n"))
    assert main(["pairs", "check", str(card)]) == 2
    shown = re.search(r"<!-- output: wrong class count -->\n```text\n(.*?)\n```", TEXT, flags=re.S).group(1)
    assert capsys.readouterr().err.strip() == shown


def _per_kind_section() -> dict:
    section = TEXT[TEXT.index("## One section per kind"):TEXT.index("## Rules the host enforces")]
    namespace: dict = {}
    exec(compile(PRELUDE, "prelude", "exec"), namespace)
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", section, flags=re.S)):
        exec(compile(block, f"{DOC.name} python block {i + 1}", "exec"), namespace)
    return namespace


def test_every_example_of_a_kind_honours_its_contract(hkt_home):
    pytest.importorskip("hkt_tabular", reason="the example plugin is installed by `make setup`")
    namespace = _per_kind_section()
    hooks = {k: v for k, v in namespace.items() if k.startswith("hkt_register_")}
    assert len(hooks) == 11, sorted(hooks)
    import hkt_core.builtins

    manager = hkt_core.get_plugin_manager(autoload=False, plugins={
        "core": hkt_core.builtins, "guide": types.SimpleNamespace(**hooks)})
    info = manager.plugins["guide"]
    assert info.ok, info.error
    assert set(info.registered) == {k.removeprefix("hkt_register_") for k in hooks}
    for kind, names in info.registered.items():
        for name in names:
            if kind == "metrics":
                contracts.check_metric(name, manager.lookup(kind, name), manager=manager)
            elif kind != "commands":
                contracts.check_entry(kind, name, manager)


def test_the_shipped_model_file_is_the_guides_and_the_readme_tour_runs_from_it(tmp_path, monkeypatch, capsys):
    """The README tour's `cd examples/my-models` and the `hkt pairs` lines after it run as written
    (in a copy of that folder, so nothing is written into the repository)."""
    import shlex
    import shutil

    root = DOC.parents[1]
    shipped = root / "examples" / "my-models" / "my_models.py"
    assert shipped.read_text(encoding="utf-8") == _file("examples/my-models/my_models.py")
    readme = (root / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## A five-minute tour"):]
    tour = tour[tour.index("```console\n") + len("```console\n"):]
    lines = [line.split("  #")[0].strip() for line in tour[:tour.index("```")].splitlines()]
    start = lines.index("cd examples/my-models")
    commands = [line for line in lines[start + 1:] if line]
    assert [c.split()[:3] for c in commands] == [["hkt", "pairs", "new"], ["hkt", "pairs", "check"],
                                                 ["hkt", "pairs", "add"]]
    folder = tmp_path / "examples" / "my-models"
    shutil.copytree(shipped.parent, folder)
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))   # the hkt command runs with its folder on sys.path
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, command
    assert "stored" in capsys.readouterr().out
