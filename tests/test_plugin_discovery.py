"""Discovery through real installed distributions: the documented example plugin and a broken one.

The packages are installed with pip (``--no-deps --no-build-isolation``, so torch is never
resolved again) into a private folder put on PYTHONPATH of a subprocess: the test environment
itself is never modified.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "writing-a-plugin.md"

pytestmark = pytest.mark.subprocess

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "hkt-broken-example"
version = "0.0.1"

[project.entry-points.hkt]
broken = "hkt_broken_example"

[tool.setuptools]
py-modules = ["hkt_broken_example"]
"""
BROKEN_MODULE = 'raise ImportError("this plugin needs a library that is not installed")\n'
EXITING_PYPROJECT = BROKEN_PYPROJECT.replace("hkt-broken-example", "hkt-exiting-example").replace(
    "broken = ", "exiting = ").replace("hkt_broken_example", "hkt_exiting_example")
EXITING_MODULE = 'import sys\nsys.exit("this plugin ends the process on import")\n'


def files_from_doc() -> dict[str, str]:
    """The example's files, exactly as docs/writing-a-plugin.md shows them."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/writing-a-plugin.md lost its example files"
    return dict(blocks)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for rel, content in files_from_doc().items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    broken = src / "hkt-broken-example"
    broken.mkdir()
    (broken / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (broken / "hkt_broken_example.py").write_text(BROKEN_MODULE)
    exiting = src / "hkt-exiting-example"
    exiting.mkdir()
    (exiting / "pyproject.toml").write_text(EXITING_PYPROJECT)
    (exiting / "hkt_exiting_example.py").write_text(EXITING_MODULE)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src / "hkt-scaled-add"), str(broken), str(exiting)],
        check=True, capture_output=True, text=True)
    return src, target


def run(site, *args, env_extra=None):
    _, target = site
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def test_installed_plugin_is_listed_and_its_mixture_found(site):
    out = run(site, "-m", "hkt_core.cli.main", "plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["scaled_add"]["distribution"] == "hkt-scaled-add"
    assert plugins["scaled_add"]["version"] == "1.0.0"
    assert plugins["scaled_add"]["registered"] == {"mixtures": ["scaled_add"]}
    assert plugins["scaled_add"]["error"] is None
    probe = run(site, "-c", "import hkt_core; print(hkt_core.lookup('mixtures', 'scaled_add').__name__)")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "ScaledAdd"


@pytest.mark.parametrize("failure", [
    r"broken \(hkt-broken-example 0\.0\.1\): FAILED: ImportError: this plugin needs",
    r"exiting \(hkt-exiting-example 0\.0\.1\): FAILED: SystemExit: this plugin ends",  # sys.exit on import
])
def test_failing_plugin_is_reported_and_listing_still_succeeds(site, failure):
    out = run(site, "-m", "hkt_core.cli.main", "plugins", "list")
    assert out.returncode == 0, out.stderr
    assert re.search(failure, out.stdout)
    assert "scaled_add (hkt-scaled-add 1.0.0)" in out.stdout
    listing = run(site, "-m", "hkt_core.cli.main", "list", "mixtures", "scaled*")
    assert listing.returncode == 0
    assert "scaled_add" in listing.stdout and "[scaled_add]" in listing.stdout
    missing = run(site, "-m", "hkt_core.cli.main", "train", "its-pair", "--method", "hkt")
    assert missing.returncode == 2
    assert re.search(r"unknown pairs 'its-pair'.*; plugin 'broken' failed to load: ImportError: this plugin needs",
                     missing.stderr), missing.stderr


def test_disabled_plugin_is_skipped(site):
    out = run(site, "-m", "hkt_core.cli.main", "plugins", "list", "--json",
              env_extra={"HKT_DISABLE_PLUGINS": "scaled_add,broken"})
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["scaled_add"]["disabled"] and plugins["broken"]["disabled"]
    assert plugins["broken"]["error"] is None
    probe = run(site, "-c", "import hkt_core; hkt_core.lookup('mixtures', 'scaled_add')",
                env_extra={"HKT_DISABLE_PLUGINS": "scaled_add"})
    assert probe.returncode != 0 and "unknown mixtures 'scaled_add'" in probe.stderr


def test_the_documented_example_test_passes(site):
    src, _ = site
    out = run(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(src / "hkt-scaled-add" / "test_scaled_add.py"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout
