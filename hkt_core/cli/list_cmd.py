"""``hkt list KIND [PATTERN]``: registered names with fnmatch wildcards and a description each."""

from __future__ import annotations

from ..errors import RegistryError, unknown_name_message
from ..plugins.registry import KIND_ALIASES, KINDS


def configure(sub) -> None:
    parser = sub.add_parser("list", help="list registered names of a kind")
    parser.add_argument("kind", help=f"one of: {', '.join(KINDS)}")
    parser.add_argument("pattern", nargs="?", default=None, help="fnmatch wildcard, e.g. 'resnet*'")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..plugins.host import default_manager

    if args.kind not in KINDS and args.kind not in KIND_ALIASES:
        raise RegistryError(unknown_name_message("kind", args.kind, KINDS))
    args.kind = KIND_ALIASES.get(args.kind, args.kind)   # `hkt list losses` lists the tasks
    entries = default_manager().registry(args.kind).entries(args.pattern)
    if not entries:
        print(f"no {args.kind} match {args.pattern!r}" if args.pattern else f"no {args.kind} registered")
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name:<{width}}  {e.description}  [{e.plugin}]")
    return 0
