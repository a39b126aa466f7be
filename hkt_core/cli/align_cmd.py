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
    parser.add_argument("--method", choices=("structural", "activation"), default="structural",
                        help="activation: also score pairs by CKA between the trained parent (cached, or "
                             "--parent-weights) and the child at initialisation on samples of the pair's data set")
    parser.add_argument("--calibration-samples", type=int, default=256, metavar="N",
                        help="activation method: samples drawn from the pair's training split (default 256)")
    parser.add_argument("--seed", type=int, default=0,
                        help="activation method: seed of the calibration draw and of the child's initialisation")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="activation method: samples per forward pass (does not change the scores)")
    parser.add_argument("--parent-weights", default=None, metavar="FILE",
                        help="activation method: the parent's trained weights (.safetensors) instead of the cache")
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
    from ..adapters import example_inputs_for
    from ..align import align_blocks, analyse
    from ..models import build_model

    if len(args.models) > 2:
        raise ConfigError(f"expected PAIR or PARENT CHILD, got {len(args.models)} names: {' '.join(args.models)}")
    from ..align.api import check_stages

    pairs = [parse_pair(p) for p in args.pair] if args.pair else None
    stages = args.stages
    check_stages(stages)
    from ..plugins.host import default_manager
    from ..train.setup.resolved import resolve_pair

    manager = default_manager()
    calibration = None
    layouts: dict[str, str] = {}
    inputs = None
    dtypes: tuple[str, ...] = ()
    if len(args.models) == 1:
        pair = resolve_pair(args.models[0], manager)
        card = pair.card
        layouts = dict(card.layouts)
        dtypes = card.input_dtypes
        with pair.scope():
            if args.method == "activation":
                parent, child, calibration = _activation_setup(pair, args, manager)
            else:
                parent, child = pair.parent, pair.child
        if args.input_shape:
            shapes = [parse_shape(s) for s in args.input_shape]
        else:   # the example inputs `hkt train` uses: a batch of the pair's data (else the card's shapes)
            shapes = list(card.input_shapes)
            inputs = pair.example_inputs
            log.debug("example inputs: %s", pair.example_source)
        if pairs is None and card.alignment is not None:
            pairs = [tuple(p) for p in card.alignment]
        if stages is None:
            stages = card.stages
        label = f"pair {card.name}: {card.parent} -> {card.child}"
    else:
        if not args.input_shape:
            raise ConfigError("PARENT CHILD needs --input-shape B,C,H,W (repeat it for each input)")
        if args.parent_weights:
            raise ConfigError("--parent-weights needs a registered PAIR (its parent architecture)")
        shapes = [parse_shape(s) for s in args.input_shape]
        parent, child = build_model(args.models[0], manager), build_model(args.models[1], manager)
        label = f"{args.models[0]} -> {args.models[1]}"
    if inputs is None:   # stated shapes: the child's adapter makes the inputs (the rule hkt train follows)
        inputs = example_inputs_for(child, shapes, dtypes, manager)
    log.debug("tracing %s", label)
    bp = analyse(parent, inputs, manager=manager, layouts=layouts, side="parent")
    bc = analyse(child, inputs, manager=manager, layouts=layouts, side="child")
    alignment = align_blocks(bp, bc, stages=stages, method=args.method, pairs=pairs, inputs=tuple(inputs),
                             calibration=calibration, batch_size=args.batch_size)
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
    if alignment.calibration:
        c = alignment.calibration
        print(f"  calibration: {c['samples']} samples of {c['source']}"
              f"{', seed ' + str(c['seed']) if 'seed' in c else ''}; trained parent, child at initialisation")
    print(alignment.table())
    from ..etm.attention import wide_vector_notes

    for note in wide_vector_notes(alignment.pairs):
        print(f"  {note}")
    return 0


def _activation_setup(pair, args, manager):
    """The trained parent, the child at initialisation (seeded) and calibration samples of the pair's data."""
    import torch

    from ..train.setup.resolved import calibration_for_pair, trained_parent

    for flag, value, least in (("--calibration-samples", args.calibration_samples, 8), ("--batch-size", args.batch_size, 1)):
        if value < least:
            raise ConfigError(f"{flag} {value} is invalid: an integer >= {least}")
    parent = trained_parent(pair, manager, weights=args.parent_weights)
    torch.manual_seed(args.seed)
    child = pair.child
    return parent, child, calibration_for_pair(pair, manager, samples=args.calibration_samples, seed=args.seed)
