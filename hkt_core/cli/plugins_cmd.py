"""``hkt plugins list [--json]``: every plugin, its version and registrations, or its error."""

from __future__ import annotations

import json


def configure(sub) -> None:
    parser = sub.add_parser("plugins", help="show installed plugins")
    inner = parser.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    listing = inner.add_parser("list", help="list plugins and what each registered")
    listing.add_argument("--json", action="store_true", help="print JSON on stdout")
    listing.set_defaults(handler=run_list)


def run_list(args) -> int:
    from ..plugins.host import default_manager

    from .main import command_collisions

    manager = default_manager()
    collisions = command_collisions(manager)
    infos = sorted(manager.plugins.values(), key=lambda p: (p.name != "core", p.name))
    if args.json:
        rows = []
        for p in infos:
            row = p.to_dict()
            row["problems"] = [m for m in (p.error, collisions.get(p.name)) if m]
            rows.append(row)
        print(json.dumps(rows, indent=2))
        return 0
    for info in infos:
        version = f" {info.version}" if info.version else ""
        dist = f" ({info.distribution}{version})" if info.distribution else ""
        if info.disabled:
            print(f"{info.name}{dist}: disabled by HKT_DISABLE_PLUGINS")
            continue
        if info.error and not info.registered:
            print(f"{info.name}{dist}: FAILED: {info.error}")
            continue
        print(f"{info.name}{dist}")
        for kind, names in info.registered.items():
            print(f"  {kind}: {', '.join(names)}")
        for problem in (info.error, collisions.get(info.name)):
            if problem:
                print(f"  problems: {problem}")
    return 0
