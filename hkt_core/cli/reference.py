"""The command-line reference (docs/cli.md), generated from the parser itself so it cannot drift.

``python -m hkt_core.cli.reference > docs/cli.md`` rewrites it; a test checks it is current.
"""

from __future__ import annotations

import argparse
import os

HEADER = """# Command-line reference

Generated from the parser by `python -m hkt_core.cli.reference > docs/cli.md` (with every plugin
under `plugins/` installed); a test keeps it current. Errors the framework raises on purpose print
one line (`hkt <command>: error: ...`) and exit with status 2.
"""


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _walk(parser: argparse.ArgumentParser, path: str, out: list[str]) -> None:
    children = list(_subparsers(parser))
    if path:
        out.append(f"\n## `{path}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    for name, child in children:
        _walk(child, f"{path} {name}".strip() if path else f"hkt {name}", out)


def markdown() -> str:
    from .main import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width
    try:
        parser = build_parser()
        parser.prog = "hkt"
        out = [HEADER, f"\n## `hkt`\n\n```text\n{parser.format_help().rstrip()}\n```\n"]
        _walk(parser, "", out)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "".join(out)


if __name__ == "__main__":
    print(markdown(), end="")
