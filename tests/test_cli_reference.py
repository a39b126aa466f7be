"""docs/cli.md is generated from the parser; it must match the commands as they are."""

from pathlib import Path

from hkt_core.cli.reference import markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == markdown(), \
        "docs/cli.md is stale: run `python -m hkt_core.cli.reference > docs/cli.md`"


def test_reference_covers_every_core_command():
    text = markdown()
    for command in ("plugins list", "list", "pairs add", "pairs show", "align", "train", "eval",
                    "compare", "export", "demo"):
        assert f"## `hkt {command}`" in text
