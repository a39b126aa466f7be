"""``hkt pairs new | add | check | list | show | remove``: the architecture registry of parent/child pairs."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def configure(sub) -> None:
    parser = sub.add_parser("pairs", help="write, add, check, list, show or remove parent/child pair cards")
    inner = parser.add_subparsers(dest="pairs_command", metavar="ACTION", required=True)

    new = inner.add_parser("new", help="write a complete, commented card from two models and a data set")
    new.add_argument("name", help="the pair's name: lowercase words joined by hyphens")
    new.add_argument("--parent", required=True, help="a registered model or module:callable")
    new.add_argument("--child", required=True, help="a registered model or module:callable")
    new.add_argument("--dataset", required=True, help="a registered data set or module:callable")
    new.add_argument("--task", default=None, help="a registered task (default: the data set's info['task'], "
                                                  "else classification)")
    new.add_argument("--stages", type=int, default=2, help="nHKT: mixing points + 1 (default 2)")
    new.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                     help="an option of the data set, repeatable (e.g. root=/data/images): the data set is "
                          "loaded with them and they are written into [dataset_options]")
    new.add_argument("--parent-option", action="append", default=[], metavar="KEY=VALUE",
                     help="an option of the parent, repeatable (e.g. pretrained=./my-bert): a source may complete "
                          "the rest from it; written into [parent_options]")
    new.add_argument("--child-option", action="append", default=[], metavar="KEY=VALUE",
                     help="an option of the child, repeatable; without any, a source may propose a child from "
                          "the parent; written into [child_options]")
    new.add_argument("-o", "--out", default=None, help="card file to write (default NAME.toml here)")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    new.set_defaults(handler=run_new)

    add = inner.add_parser("add", help="validate a card and store it in $HKT_HOME/pairs")
    add.add_argument("card", help="path to a pair card (TOML)")
    add.add_argument("--force", action="store_true", help="replace a stored card of the same name")
    add.set_defaults(handler=run_add)

    check = inner.add_parser("check", help="pre-flight of a pair: models, data, alignment, one step per method")
    check.add_argument("pair", help="a registered pair or a card file (TOML)")
    check.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    check.set_defaults(handler=run_check)

    listing = inner.add_parser("list", help="registered pairs with where each comes from")
    listing.add_argument("--user", action="store_true", help="only the cards added with `hkt pairs add`")
    listing.set_defaults(handler=run_list)

    show = inner.add_parser("show", help="print a pair card as TOML")
    show.add_argument("name", help="a registered pair (`hkt pairs list`)")
    show.set_defaults(handler=run_show)

    remove = inner.add_parser("remove", help="remove a card added with `hkt pairs add`")
    remove.add_argument("name", help="a pair added with `hkt pairs add` (`hkt pairs list --user`)")
    remove.set_defaults(handler=run_remove)


def run_new(args) -> int:
    from ..config import parse_value
    from ..errors import ConfigError
    from ..pairs.scaffold import write_new_card
    from ..plugins.host import default_manager

    def parsed(items, flag: str, example: str) -> dict:
        options = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{flag} {item!r} is invalid: KEY=VALUE, e.g. {flag} {example}")
            options[key.strip()] = parse_value(value.strip())
        return options

    path = write_new_card(args.name, parent=args.parent, child=args.child, dataset=args.dataset, task=args.task,
                          stages=args.stages, out=args.out, force=args.force,
                          dataset_options=parsed(args.dataset_option, "--dataset-option", "root=/data/images"),
                          parent_options=parsed(args.parent_option, "--parent-option", "pretrained=./my-bert"),
                          child_options=parsed(args.child_option, "--child-option", "name=resnet18"),
                          manager=default_manager())
    print(f"wrote {path}; next: hkt pairs check {path}, then hkt pairs add {path}")
    return 0


def run_add(args) -> int:
    from ..train.setup.checks import check_names, check_stages
    from ..pairs.store import add_user_card
    from ..plugins.host import default_manager, reset_default_manager
    from ..train.setup.preflight import check_outputs

    manager = default_manager()
    known = {e.name for e in manager.registry("pairs").entries() if e.plugin != "user"}

    def check(card) -> None:
        check_names(card, manager)    # the names exist (trust rules)
        check_outputs(card, manager)  # the data's inputs and class count fit both models
        check_stages(card, manager)   # the stages can be aligned

    target = add_user_card(args.card, known_pairs=known, force=args.force, check=check, manager=manager)
    reset_default_manager()
    print(f"stored {target}")
    return 0


def _card(ref: str, manager):
    """A registered pair by name, or a card file (a path ending in .toml)."""
    from ..pairs.card import PairCard

    if ref.endswith(".toml") or Path(ref).is_file():
        return PairCard.from_toml(ref, manager=manager)
    return manager.lookup("pairs", ref)


def run_check(args) -> int:
    from ..plugins.host import default_manager
    from ..train.setup.preflight import check_pair

    manager = default_manager()
    card = _card(args.pair, manager)
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise ConfigError("--methods needs at least one method, e.g. --methods baseline,hkt")
        for m in methods:
            manager.lookup("methods", m)
    report = check_pair(card, manager=manager, methods=methods,
                        required=None if methods is None else methods)
    print("\n".join(report.lines()))
    return 0


def run_list(args) -> int:
    from ..pairs.store import user_cards
    from ..plugins.host import default_manager

    if args.user:
        cards = user_cards()
        if not cards:
            print("no pairs added with `hkt pairs add`")
        for path, card in cards:
            state = f"problem: {card}" if isinstance(card, Exception) else card.description
            name = path.stem if isinstance(card, Exception) else card.name
            print(f"{name}  {state}  [{path}]")
        return 0
    entries = default_manager().registry("pairs").entries()
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        print(f"{e.name:<{width}}  {e.description}  [{e.plugin}]")
    return 0


def run_show(args) -> int:
    from ..plugins.host import default_manager

    entry = default_manager().registry("pairs").entry(args.name)
    print(f"# pair {entry.name} (from plugin {entry.plugin})")
    print(entry.obj.to_toml(), end="")
    return 0


def run_remove(args) -> int:
    from ..pairs.store import remove_user_card
    from ..plugins.host import default_manager, reset_default_manager

    path = remove_user_card(args.name, default_manager())
    reset_default_manager()
    print(f"removed {path}")
    return 0
