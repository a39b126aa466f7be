"""The package's shape, as docs/architecture.md states it: no import circle between hkt_core's
packages and top-level modules (imports inside functions counted, ``if TYPE_CHECKING:`` not), at
most 10 top-level modules, the process-wide plugin manager resolved only by the CLI and the plugin
host, the shipped plugins on public names only, and the moved modules still importable."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import warnings
from pathlib import Path

import networkx as nx
import pytest

import hkt_core

ROOT = Path(hkt_core.__file__).parent
REPO = ROOT.parent
#: where the process-wide manager may be asked for: the command line and the plugin host
MAY_CALL_DEFAULT = ("cli", "plugins")
#: modules plugins may import names from, besides the package itself (the one loss library)
PUBLIC_MODULES = {"hkt_core", "hkt_core.tasks", "hkt_core.tasks.metrics", "hkt_core.tasks.losses"}


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
                skipped.update(id(n) for n in ast.walk(node))
    return skipped


def imports_of(path: Path, name: tuple[str, bool] | None = None) -> list[tuple[str, list[str], int]]:
    """Every import of ``path`` (the module ``name``, default: its place in the repository) as
    (absolute module, imported names, line), function-level included."""
    module, is_package = name or _module_name(path)
    package = module if is_package else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], node.lineno))
    return out


def _unit(module: str) -> str | None:
    """The package or top-level module of hkt_core that ``module`` belongs to."""
    parts = module.split(".")
    if parts[0] != "hkt_core" or len(parts) < 2:
        return None
    return parts[1]


def unit_graph() -> tuple[nx.DiGraph, dict[tuple[str, str], list[str]]]:
    units = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    graph, where = nx.DiGraph(), {}
    for path in ROOT.rglob("*.py"):
        source = _unit(_module_name(path)[0])
        if source is None:
            continue
        graph.add_node(source)
        for target, names, line in imports_of(path):
            targets = [target] + ([f"{target}.{n}" for n in names] if target == "hkt_core" else [])
            for t in targets:
                unit = _unit(t)
                if unit in units and unit != source:
                    graph.add_edge(source, unit)
                    where.setdefault((source, unit), []).append(f"{path.relative_to(REPO)}:{line}")
    return graph, where


def test_no_import_circle_between_packages_and_top_level_modules():
    graph, where = unit_graph()
    cycles = list(nx.simple_cycles(graph))
    described = ["; ".join(f"{a} -> {b} ({where[(a, b)][0]})" for a, b in zip(c, c[1:] + c[:1])) for c in cycles]
    assert not cycles, "import circles:\n" + "\n".join(described)
    assert graph.number_of_nodes() >= 15  # the scan saw the packages (not an empty walk)


def module_graph() -> tuple[nx.DiGraph, dict[tuple[str, str], list[str]]]:
    """hkt_core's files and the imports between them (function-level included, TYPE_CHECKING not):
    ``from package import name`` points at the file ``name`` when it is one, else at the package's
    ``__init__``; a moved module's old path counts as its new one."""
    files = {_module_name(p)[0]: p for p in ROOT.rglob("*.py")}
    moved = dict(hkt_core.MOVED_MODULES)
    graph, where = nx.DiGraph(), {}
    for module, path in files.items():
        graph.add_node(module)
        for target, names, line in imports_of(path):
            if not target.startswith("hkt_core"):
                continue
            target = moved.get(target, target)
            targets = [moved.get(f"{target}.{n}", f"{target}.{n}") for n in names]
            targets = [t for t in targets if t in files] or [target]
            for t in targets:
                while t not in files and "." in t:   # a name of a module, not a file
                    t = t.rsplit(".", 1)[0]
                if t in files and t != module:
                    graph.add_edge(module, t)
                    where.setdefault((module, t), []).append(f"{path.relative_to(REPO)}:{line}")
    return graph, where


def test_no_import_circle_between_any_two_files():
    graph, where = module_graph()
    circles = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    described = []
    for circle in circles:
        edges = [f"{a} -> {b} ({where[(a, b)][0]})" for a in sorted(circle) for b in sorted(graph.successors(a))
                 if b in circle]
        described.append(f"{len(circle)} files: " + "; ".join(edges))
    assert not circles, "import circles between files:\n" + "\n".join(described)
    assert graph.number_of_nodes() >= 100   # the scan saw the files (not an empty walk)


#: train/'s layers, lowest first: a file imports its own layer and the layers before it only
TRAIN_LAYERS = ("folders", "methods", "loop", "setup")


def test_train_is_four_layers_importing_downward_only():
    train = ROOT / "train"
    loose = sorted(p.name for p in train.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"files of train/ outside its layers {TRAIN_LAYERS}: {loose}"
    assert sorted(p.name for p in train.iterdir() if (p / "__init__.py").is_file()) == sorted(TRAIN_LAYERS)
    graph, where = module_graph()
    upward = []
    for a, b in graph.edges:
        if a.startswith("hkt_core.train.") and b.startswith("hkt_core.train"):
            below = TRAIN_LAYERS.index(a.split(".")[2])
            layer = b.split(".")[2] if b.count(".") >= 2 else None
            if layer is None or TRAIN_LAYERS.index(layer) > below:
                upward.append(f"{a} -> {b} ({where[(a, b)][0]})")
    assert not upward, "imports up train/'s layers:\n" + "\n".join(sorted(upward))


def test_the_scan_counts_function_level_imports_and_skips_type_checking(tmp_path):
    """The rule the circle test applies, on a file written here."""
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from ..cli import main\n"
                     "def f():\n    from ..align import api\n")
    found = {t for t, _, _ in imports_of(probe, ("hkt_core.train.probe", False))}
    assert "hkt_core.align" in found and "hkt_core.cli" not in found


def test_at_most_ten_top_level_modules():
    modules = sorted(p.stem for p in ROOT.glob("*.py") if p.stem != "__init__")
    assert len(modules) <= 10, modules


def test_only_the_cli_and_the_plugin_host_ask_for_the_process_wide_manager():
    callers = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in MAY_CALL_DEFAULT or relative == Path("__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name == "default_manager":
                    callers.append(f"{relative}:{node.lineno}")
    assert not callers, f"default_manager() called below the CLI and the plugin host: {callers}"


def test_the_shipped_plugins_import_public_names_only():
    bad = []
    sources = [p for folder in ("plugins", "examples") for p in (REPO / folder).glob("*/src/**/*.py")]
    assert sources
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("hkt_core"):
                names = [a.name for a in node.names]
                if node.module not in PUBLIC_MODULES or any(n.startswith("_") for n in names):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import {', '.join(names)}")
                elif node.module == "hkt_core":
                    missing = [n for n in names if n not in hkt_core.__all__ and n != "__version__"]
                    bad.extend(f"{path.relative_to(REPO)}:{node.lineno} {n} is not in hkt_core.__all__"
                               for n in missing)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("old, new", sorted(hkt_core.MOVED_MODULES.items()))
def test_a_moved_module_imports_under_its_old_path_with_a_deprecation(old, new, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, old, raising=False)   # as in a fresh process
    leaf = old.rsplit(".", 1)[1]   # importing binds it on the package (hkt_core.registry is also a function)
    monkeypatch.setattr(hkt_core, leaf, getattr(hkt_core, leaf, None), raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == [
        f"{old} moved to {new}; the old path goes in the next release"]


def test_nothing_left_hkt_core_all():
    """The public names of the previous release are all still served."""
    previous = {"genetic_attention", "Family", "HKTOutput", "HKTLoss", "check_pair", "PairReport", "PairCheckError",
                "Task", "Metric", "Mixture", "Transfer", "Method", "MethodContext", "StepOutput", "DatasetBundle",
                "Registrar", "registers", "TrainingDiverged", "Alignment", "BlockPair", "Run", "align", "load_run",
                "train", "Adapter", "AlignmentError", "CheckpointError", "ConfigError", "GenericAdapter",
                "HKTConfig", "HKTError", "PairCard", "RegistryError", "TraceError", "TrainConfig", "__version__",
                "adapter_for", "default_manager", "get_plugin_manager", "hookimpl", "lookup", "registry",
                "reset_default_manager"}
    assert previous <= set(hkt_core.__all__)
    for name in hkt_core.__all__:
        assert getattr(hkt_core, name) is not None


def test_the_tasks_kind_and_its_deprecated_name():
    """``tasks`` holds the tasks; ``losses`` (the kind's old name) and ``hkt_register_losses`` still
    reach it, each with a deprecation."""
    from hkt_core.plugins import host

    class OldStyle:
        @hkt_core.hookimpl
        def hkt_register_losses(self, registry):
            registry.add("old-style", hkt_core.lookup("tasks", "classification"))

    host._said.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = hkt_core.get_plugin_manager(plugins={"old-style": OldStyle()})
        assert manager.lookup("losses", "old-style") is manager.lookup("tasks", "old-style")
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("hkt_register_losses: it is now hkt_register_tasks" in m for m in messages)
    assert any("registry kind 'losses' is now 'tasks'" in m for m in messages)
    assert manager.plugins["old-style"].registered == {"tasks": ["old-style"]}


@pytest.mark.parametrize("package, module", [("hkt_core.pairs", "hkt_core.pairs.card"),
                                             ("hkt_core.plugins", "hkt_core.plugins.host"),
                                             ("hkt_core.tasks", "hkt_core.tasks.task")])
def test_a_module_that_became_a_package_still_serves_its_names(package, module):
    """``from hkt_core.pairs import X`` keeps working for every public name the module defined."""
    path = Path(importlib.import_module(module).__file__)
    defined = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
    public = {n for n in defined if not n.startswith("_")}
    served = set(dir(importlib.import_module(package)))
    assert public <= served, sorted(public - served)


def test_every_import_inside_hkt_core_names_what_exists():
    """Each ``from X import Y`` of the package (functions' included) finds its module and name."""
    missing = []
    for path in ROOT.rglob("*.py"):
        for target, names, line in imports_of(path):
            if not target.startswith("hkt_core"):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    module = importlib.import_module(target)
            except ImportError as exc:
                missing.append(f"{path.relative_to(REPO)}:{line} {target}: {exc}")
                continue
            for name in names:
                if name != "*" and not hasattr(module, name) and importlib.util.find_spec(f"{target}.{name}") is None:
                    missing.append(f"{path.relative_to(REPO)}:{line} {target} has no {name}")
    assert not missing, "\n".join(missing)
