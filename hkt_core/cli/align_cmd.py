"""``hkt align PAIR | PARENT CHILD --input-shape ...``: trace two models and align their blocks."""

from __future__ import annotations

import logging
import sys

from ..errors import ConfigError

log = logging.getLogger(__name__)


def configure(sub) -> None:
    parser = sub.add_parser(
        "align", help="trace a parent and a child and align their blocks",
        description="Align a parent's blocks to a child's. Give a registered pair card (PAIR), or two "
                    "models (registered names or module:callable) with --input-shape.")
    parser.add_argument("models", nargs="+", metavar="PAIR | PARENT CHILD",
                        help="a registered pair, or a parent and a child model")
    parser.add_argument("--input-shape", action="append", default=None, metavar="B,C,H,W",
                        help="example input shape, batch first; repeat for models with several inputs")
    parser.add_argument("--stages", type=int, default=None, help="N aligned pairs (the last is the predictions)")
    parser.add_argument("--method", choices=("structural", "activation"), default="structural")
    parser.add_argument("--pair", action="append", default=None, metavar="PARENT_NODE=CHILD_NODE",
                        help="a manual mixing pair (repeatable, in forward order)")
    parser.add_argument("--json", action="store_true", help="print only the alignment as JSON")
    parser.add_argument("--plot", default=None, metavar="FILE.png|FILE.svg", help="draw the alignment")
    parser.set_defaults(handler=run)


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise ConfigError(f"--input-shape {text!r} is invalid: comma-separated positive integers with the "
                          f"batch first, e.g. 1,3,32,32")
    return shape


def parse_pair(text: str) -> tuple[str, str]:
    parent, sep, child = text.partition("=")
    if not sep or not parent.strip() or not child.strip():
        raise ConfigError(f"--pair {text!r} is invalid: expected PARENT_NODE=CHILD_NODE, e.g. layer2=layer1")
    return parent.strip(), child.strip()


def run(args) -> int:
    from ..adapters import adapter_for
    from ..align import align_blocks, analyse
    from ..models import build_model

    if len(args.models) > 2:
        raise ConfigError(f"expected PAIR or PARENT CHILD, got {len(args.models)} names: {' '.join(args.models)}")
    pairs = [parse_pair(p) for p in args.pair] if args.pair else None
    stages = args.stages
    from ..plugins import default_manager

    manager = default_manager()
    if len(args.models) == 1:
        card = manager.lookup("pairs", args.models[0])
        parent = build_model(card.parent, manager, **card.parent_options)
        child = build_model(card.child, manager, **card.child_options)
        shapes = [parse_shape(s) for s in args.input_shape] if args.input_shape else list(card.input_shapes)
        if pairs is None and card.alignment is not None:
            pairs = [tuple(p) for p in card.alignment]
        if stages is None:
            stages = card.stages
        label = f"pair {card.name}: {card.parent} -> {card.child}"
    else:
        if not args.input_shape:
            raise ConfigError("PARENT CHILD needs --input-shape B,C,H,W (repeat it for each input)")
        shapes = [parse_shape(s) for s in args.input_shape]
        parent, child = build_model(args.models[0], manager), build_model(args.models[1], manager)
        label = f"{args.models[0]} -> {args.models[1]}"
    inputs = adapter_for(parent, manager).example_inputs(parent, shapes)
    log.debug("tracing %s", label)
    bp, bc = analyse(parent, inputs, manager=manager), analyse(child, inputs, manager=manager)
    alignment = align_blocks(bp, bc, stages=stages, method=args.method, pairs=pairs, inputs=tuple(inputs))
    if args.plot:
        from ..align.plot import plot_alignment

        plot_alignment(alignment, args.plot, bp, bc, title=f"{label} ({alignment.stages}HKT)")
        log.info("wrote %s", args.plot)
    if args.json:
        sys.stdout.write(alignment.to_json() + "\n")
        return 0
    print(label)
    for side, bg in (("parent", bp), ("child", bc)):
        print(f"  {side}: {type(bg.traced.model).__name__}, traced with {bg.traced.backend}, "
              f"{len(bg.traced.order)} values, {len(bg.candidates)} candidate blocks")
    print(alignment.table())
    return 0
