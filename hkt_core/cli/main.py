"""``hkt``: entry point. Core sub-commands live in sibling modules; plugins add more.

Each core module exposes ``configure(subparsers)``; plugin commands come from the ``commands``
registry (``configure(parser)`` on a parser created for them). Handlers return an exit code.
Errors the framework raises on purpose (:class:`hkt_core.errors.HKTError`) and failures of the file
system (``OSError``: a full disk, a read-only or failing one) print one line and exit with status 2;
anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import HKTError

#: Core command modules, in the order ``hkt --help`` shows them.
CORE_MODULES = (
    "hkt_core.cli.plugins_cmd",
    "hkt_core.cli.list_cmd",
    "hkt_core.cli.pairs_cmd",
    "hkt_core.cli.align_cmd",
    "hkt_core.cli.train_cmd",
)


def build_parser(manager=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hkt", description="Hereditary Knowledge Transfer: train small networks that inherit from larger ones.")
    parser.add_argument("--version", action="version", version=f"hkt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in CORE_MODULES:
        importlib.import_module(module_name).configure(sub)
    if manager is None:
        from ..plugins.host import default_manager

        manager = default_manager()
    parser.collisions = command_collisions(manager, set(sub.choices))
    for entry in manager.registry("commands").entries():
        if entry.name in sub.choices:
            continue  # a core command wins: said on every command (main) and in `hkt plugins list`
        plugin_parser = sub.add_parser(entry.name, help=f"{entry.description} [plugin {entry.plugin}]")
        entry.obj(plugin_parser)
    polish(parser)
    return parser


def core_command_names() -> set[str]:
    """The names of the core's own commands."""
    sub = argparse.ArgumentParser().add_subparsers()
    for module_name in CORE_MODULES:
        importlib.import_module(module_name).configure(sub)
    return set(sub.choices)


def command_collisions(manager, core: set[str] | None = None) -> dict[str, str]:
    """``{plugin: problem}`` for each plugin command whose name a core command already takes (the
    core's wins; two plugins registering one name is refused when the second one loads)."""
    core = core_command_names() if core is None else core
    found: dict[str, list[str]] = {}
    for entry in manager.registry("commands").entries():
        if entry.name in core:
            found.setdefault(entry.plugin, []).append(
                f"command {entry.name!r} of plugin {entry.plugin!r} collides with command {entry.name!r} of "
                f"plugin 'core', which wins: plugin {entry.plugin!r}'s is not available; rename it in that plugin")
    return {plugin: "; ".join(problems) for plugin, problems in found.items()}


def _subcommands(parser: argparse.ArgumentParser):
    """``(name, parser, help)`` of each direct subcommand of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                yield name, child, helps.get(name)


def polish(parser: argparse.ArgumentParser) -> None:
    """One style for every command's help, plugins' included: each subcommand has a description
    (its one-line help, when it gave none), positional arguments are named in capitals (``PAIR``,
    ``RUN_DIR``) and an option's help ends with its default when it has one and does not say it."""
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if not action.option_strings and action.metavar is None:
            action.metavar = action.dest.upper()
        default = action.default
        shown = default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0
        if action.help and shown and "default" not in action.help:
            text = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            action.help = f"{action.help} (default {text.replace('%', '%%')})"
    for _, child, help_text in _subcommands(parser):
        if child.description is None and help_text:
            child.description = help_text[:1].upper() + help_text[1:] + ("" if help_text.endswith(".") else ".")
        polish(child)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--version"], ["-V"]):
        print(f"hkt {__version__}")
        return 0
    parser = build_parser()
    for problem in parser.collisions.values():
        print(f"hkt: warning: {problem}", file=sys.stderr)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(message)s")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except BrokenPipeError:
        return _closed_pipe()
    except HKTError as exc:
        print(f"hkt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused a read or a write: the environment's fault, not a bug
        where = f" {exc.filename}" if exc.filename else ""
        print(f"hkt {args.command}: error: cannot read or write{where}: "
              f"{exc.strerror or ' '.join(str(exc).split())[:200]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # training says what its run folder kept and how to resume
        print(f"hkt {args.command}: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130


def _closed_pipe() -> int:
    """The reader of our output went away (``hkt pairs list | head``): stop quietly, as a pipe
    expects; what is still buffered for stdout goes nowhere instead of raising at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests capture stdout)
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
