"""``hkt pairs add CARD.toml | show NAME``: the architecture registry of parent/child pairs."""

from __future__ import annotations


def configure(sub) -> None:
    parser = sub.add_parser("pairs", help="add or show parent/child pair cards")
    inner = parser.add_subparsers(dest="pairs_command", metavar="ACTION", required=True)
    add = inner.add_parser("add", help="validate a card and store it in $HKT_HOME/pairs")
    add.add_argument("card", help="path to a pair card (TOML)")
    add.add_argument("--force", action="store_true", help="replace a stored card of the same name")
    add.set_defaults(handler=run_add)
    show = inner.add_parser("show", help="print a pair card as TOML")
    show.add_argument("name")
    show.set_defaults(handler=run_show)


def run_add(args) -> int:
    from ..pairs import add_user_card
    from ..plugins import default_manager, reset_default_manager

    from ..card_checks import check_card

    manager = default_manager()
    known = {e.name for e in manager.registry("pairs").entries() if e.plugin != "user"}
    target = add_user_card(args.card, known_pairs=known, force=args.force,
                           check=lambda card: check_card(card, manager))
    reset_default_manager()
    print(f"stored {target}")
    return 0


def run_show(args) -> int:
    from ..plugins import default_manager

    entry = default_manager().registry("pairs").entry(args.name)
    print(f"# pair {entry.name} (from plugin {entry.plugin})")
    print(entry.obj.to_toml(), end="")
    return 0
