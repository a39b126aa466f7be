"""``hkt inhernet report MODEL``: what compressing a model would keep and save, layer by layer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hkt_core import parse_value
from hkt_core import CheckpointError, ConfigError

#: Used when no rank rule is given on the command line.
DEFAULT_ENERGY = 0.9


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` action to ``hkt inhernet``."""
    actions = parser.add_subparsers(dest="inhernet_action", metavar="ACTION")
    report = actions.add_parser(
        "report", help="per-layer ranks, kept energy and parameters of an InherNet compression",
        description="Compress MODEL with InherNet (nothing is written) and print, for every "
                    "nn.Linear/nn.Conv2d, the rank, the kept energy (fraction of squared singular "
                    f"values) and the parameters before and after. Default rule: --energy {DEFAULT_ENERGY}.")
    report.add_argument("model", metavar="MODEL", help="a registered model name or module:callable")
    report.add_argument("--weights", metavar="FILE", help="safetensors weights to load into MODEL first")
    rule = report.add_mutually_exclusive_group()
    rule.add_argument("--rank", type=int, metavar="R", help="the same rank for every compressed layer")
    rule.add_argument("--energy", type=float, metavar="E",
                      help="per layer, the smallest rank keeping this fraction of the energy, in (0, 1]")
    rule.add_argument("--budget", type=float, metavar="F",
                      help="the whole model's parameters after compression as a fraction of before, in (0, 1)")
    report.add_argument("--heads", type=int, default=2, metavar="M", help="up heads per layer (default 2)")
    report.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                        help="leave layers matching this fnmatch pattern dense (repeatable)")
    report.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword option for the model factory (repeatable), e.g. num_classes=10")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.set_defaults(handler=run_report)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _model_options(assignments: list[str]) -> dict:
    options = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-option {assignment!r}: expected KEY=VALUE, e.g. num_classes=10")
        options[key.strip()] = parse_value(raw.strip())
    return options


def load_weights(model, path: str | Path) -> None:
    """Load a safetensors file into ``model`` (every key must match)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if any(key.endswith(".heads") for key in state):
        raise CheckpointError(f"{path} holds an already compressed model; the report reads the dense "
                              "weights of MODEL")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{path} does not fit the model: {exc}") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{path} does not fit the model: missing {list(result.missing_keys)[:5]}, "
                              f"unexpected {list(result.unexpected_keys)[:5]}")


def run_report(args: argparse.Namespace) -> int:
    from hkt_core import build_model

    from hkt_core import default_manager

    from .compress import compress_model
    from .policy import CompressionPolicy

    rule = {"rank": args.rank, "energy": args.energy, "budget": args.budget}
    rule = {key: value for key, value in rule.items() if value is not None} or {"energy": DEFAULT_ENERGY}
    policy = CompressionPolicy(heads=args.heads, exclude=tuple(args.exclude), **rule)
    model = build_model(args.model, default_manager(), **_model_options(args.model_option))
    if args.weights:
        load_weights(model, args.weights)
    _, report = compress_model(model, policy)
    if args.json:
        print(json.dumps({"model": args.model, **report.to_dict()}, indent=2))
    else:
        print(f"model {args.model}" + (f" (weights {args.weights})" if args.weights else ""))
        print(report.format())
    return 0
