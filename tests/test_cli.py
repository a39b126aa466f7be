"""The foundation's command line: version, plugins, list."""

from __future__ import annotations

import json
import subprocess
import sys

from hkt_core import __version__
from hkt_core.cli.main import main


def test_version_from_the_console_script():
    out = subprocess.run([sys.executable, "-m", "hkt_core.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"hkt {__version__}"


def test_plugins_list_json(capsys):
    assert main(["plugins", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    core = next(p for p in data if p["name"] == "core")
    assert core["distribution"] == "hkt" and core["error"] is None
    assert "generic" in core["registered"]["adapters"]


def test_list_unknown_kind_is_an_error(capsys):
    assert main(["list", "mixture"]) == 2
    assert "unknown kind 'mixture'" in capsys.readouterr().err


def test_list_with_wildcard_and_no_match(capsys):
    assert main(["list", "adapters", "gen*"]) == 0
    assert "generic" in capsys.readouterr().out
    assert main(["list", "adapters", "zzz*"]) == 0
    assert "no adapters match 'zzz*'" in capsys.readouterr().out
