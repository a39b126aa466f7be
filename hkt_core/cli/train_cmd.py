"""``hkt train | eval | compare | export | demo``: the training runner on the command line."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError
from ..io import StorageError
from ..train.methods import methods_with_role

DEMO_PAIR = "digits-demo"
DEMO_METHODS = methods_with_role("demo")
DEMO_SEEDS = 3
TRUST_HELP = ("let the run folder's module:callable references import modules from the folders it names "
              "(its card's folder, the run folder); without it only modules importable from here are used")


def configure(sub) -> None:
    t = sub.add_parser("train", help="train a method on a registered pair (a run folder with checkpoints)")
    t.add_argument("pair", help="a registered pair (`hkt list pairs`)")
    from ..train.methods import BUILTIN_METHODS   # the one list of the core's methods

    t.add_argument("--method", required=True,
                   help=f"{', '.join(BUILTIN_METHODS)} or a plugin's (`hkt list methods`)")
    _train_options(t)
    t.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/<pair>-<method>-<timestamp>)")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    mode.add_argument("--force", action="store_true", help="start over in an existing run folder")
    t.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting by dotted key: train.grad_clip=1.0, hkt.lam=0.5, card.stages=3, "
                        "method.<option>=..., dataset.<option>=... (e.g. dataset.root=DIR); hkt.preset=paper "
                        "for the paper's HKT settings (repeatable)")
    t.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes (torch.distributed, via torchrun; default 1)")
    t.add_argument("--parent-epochs", type=int, default=None, metavar="N",
                   help="the parent's epochs when it has to be trained (the card's [parent_train] epochs; "
                        "--epochs is the children's)")
    t.add_argument("--parent-weights", default=None, metavar="FILE",
                   help="the parent's weights (safetensors) instead of the cached or trained parent")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _scale_options(t)
    t.set_defaults(handler=run_train)

    e = sub.add_parser("eval", help="evaluate a run's child on its validation or test split")
    e.add_argument("run_dir", help="a run folder (written by `hkt train`)")
    e.add_argument("--split", choices=("val", "test"), default="val",
                   help="which split to evaluate on (default val)")
    e.add_argument("--which", choices=("best", "last"), default="best", help="which checkpoint (default best)")
    e.add_argument("--trust-code", action="store_true", help=TRUST_HELP)
    e.set_defaults(handler=run_eval)

    c = sub.add_parser("compare", help="several methods over several seeds: mean +- std table, paired tests "
                                       "and chart")
    c.add_argument("pair", help="a registered pair (`hkt list pairs`)")
    c.add_argument("--methods", default="baseline,kd,hkt", metavar="LIST",
                   help="comma-separated methods (default baseline,kd,hkt)")
    c.add_argument("--seeds", default="0,1,2", metavar="LIST", help="comma-separated seeds (default 0,1,2)")
    c.add_argument("--epochs", type=int, default=None, metavar="N", help="override the card's epochs (children only)")
    c.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                   help="where the runs train (default: the card's, usually cpu)")
    _threads_options(c, workers=True)
    c.add_argument("--out", default=None, metavar="DIR", help="folder of the runs and tables (default runs/compare-<pair>)")
    c.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting by dotted key, as for `hkt train` (repeatable)")
    c.set_defaults(handler=run_compare)

    x = sub.add_parser("export", help="export a run's child alone (verified against the child)")
    x.add_argument("run_dir", help="a run folder (written by `hkt train`)")
    x.add_argument("--format", default="safetensors", metavar="FORMAT",
                   help="safetensors, onnx, pt2 or a plugin's format (`hkt list export_formats`; hkt-zoo's hf: a "
                        "transformers save_pretrained folder, torchvision and timm: what their own loaders read) "
                        "(default safetensors)")
    x.add_argument("--out", default=None, metavar="FILE",
                   help="output file, or folder for a folder format (default RUN_DIR/export/child.<ext>)")
    x.add_argument("--trust-code", action="store_true", help=TRUST_HELP)
    x.set_defaults(handler=run_export)

    d = sub.add_parser("demo", help=f"the main job: parent, baseline, KD and HKT on {DEMO_PAIR} over seeds, one "
                                    f"table with paired tests")
    d.add_argument("--out", default="runs/demo", metavar="DIR", help="folder of the demo's runs (default runs/demo)")
    d.add_argument("--seeds", default=None, metavar="LIST",
                   help="comma-separated seeds, at least 3 for a paired test (default 0,1,2; the same as "
                        "`hkt compare --seeds`)")
    d.add_argument("--num-seeds", type=int, default=None, metavar="N",
                   help=f"seeds 0..N-1 instead of --seeds (default {DEMO_SEEDS})")
    d.add_argument("--epochs", type=int, default=None, metavar="N", help="override the pair's epochs (children only)")
    _threads_options(d, workers=True)
    d.set_defaults(handler=run_demo)


def _threads_options(p: argparse.ArgumentParser, *, workers: bool = False) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch intra-op threads per run (default 1 in every command; another count is "
                        "another run: it may change the weights)")
    if workers:
        p.add_argument("--workers", type=int, default=None, metavar="N",
                       help="runs trained at once, in worker processes (default: one per CPU core, at most one "
                            "per run; does not change the results)")


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="override the card's epochs (the children's; --parent-epochs sets the parent's)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="override the card's batch size")
    p.add_argument("--lr", type=float, default=None, metavar="RATE", help="override the card's learning rate")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="seed of the child's initialisation and data order (default 0)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                   help="where to train (default: the card's, usually cpu)")
    p.add_argument("--stages", type=int, default=None, metavar="N",
                   help="nHKT: N-1 mixing points plus the outputs (default: the card's stages)")
    _threads_options(p)


def _scale_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                   help="autocast precision of the training forwards (card [train] precision; default fp32)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the networks and the Family's lockstep step (card [train] compile); "
                        "compiling costs minutes on a CPU (the demo pair's step: 55 to 213 s on 2 cores, "
                        "the whole run 95 s instead of 8 s): for long runs and GPUs")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="channels-last memory format for 2-D image models")
    p.add_argument("--log", action="append", default=[], choices=("tensorboard",),
                   help="also log to a tracker: tensorboard (event files in RUN/tensorboard; pip install 'hkt[tensorboard]')")


def _overrides(args) -> dict:
    return {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                              "seed": args.seed, "device": args.device, "stages": args.stages,
                              "precision": getattr(args, "precision", None), "compile": getattr(args, "compile", None),
                              "channels_last": getattr(args, "channels_last", None),
                              "threads": getattr(args, "threads", None)}.items()
            if v is not None}


# -- train -------------------------------------------------------------------------------------

def run_train(args) -> int:
    from ..train.setup.api import default_out, resolve

    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc} is invalid: must be an integer >= 1")
    out = Path(args.out) if args.out else None
    if args.nproc > 1:
        return _launch_torchrun(args, out or default_out(args.pair, args.method))
    spec = resolve(args.pair, args.method, out=out, resume=args.resume, force=args.force,
                   parent_weights=args.parent_weights, parent_epochs=args.parent_epochs, settings=args.settings,
                   progress=False if args.no_progress else None, log=args.log, **_overrides(args))
    from ..train.setup.training import Trainer

    trainer = Trainer(spec)
    try:
        folder = trainer.fit()
    except OSError as exc:  # a write the file system refused (StorageError), or a read that failed
        raise io_failure(exc, trainer) from None
    if int(os.environ.get("RANK", "0")) == 0:
        from ..train.folders.run import Run

        _print_summary(Run(folder, spec.manager))
    return 0


#: What to do first, by error number, before continuing a run a failed write stopped.
_FIRST = {errno.ENOSPC: "free some space first", errno.EDQUOT: "free some of your quota first",
          errno.EROFS: "make the file system writable first", errno.EACCES: "get write permission first",
          errno.EPERM: "get write permission first", errno.EIO: "check the disk first"}


def io_failure(exc: OSError, trainer) -> StorageError:
    """One line for an I/O failure during training: what failed, the run folder and the epoch it keeps
    (every write is atomic, so the last commit is whole), and the command that continues the run."""
    if isinstance(exc, StorageError):
        what = str(exc)
    else:
        where = f" on {exc.filename}" if exc.filename else ""
        what = f"I/O error{where}: {exc.strerror or ' '.join(str(exc).split())[:200]}"
    first = f" ({_FIRST[exc.errno]})" if exc.errno in _FIRST else ""
    return StorageError(exc.errno, f"{what}{first}; {trainer._kept_and_resume()}")


def _launch_torchrun(args, out: Path) -> int:
    """Re-run this command under ``torchrun --nproc_per_node N`` (one process per rank)."""
    argv = ["train", args.pair, "--method", args.method, "--out", str(out)]
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--lr", args.lr),
                        ("--seed", args.seed), ("--device", args.device), ("--stages", args.stages),
                        ("--parent-weights", args.parent_weights), ("--parent-epochs", args.parent_epochs),
                        ("--precision", args.precision),
                        ("--threads", args.threads)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--compile"] if args.compile else []
    argv += ["--channels-last"] if args.channels_last else []
    for name in args.log:
        argv += ["--log", name]
    argv += ["--resume"] if args.resume else ["--force"] if args.force else []
    for s in args.settings:
        argv += ["--set", s]
    if args.no_progress:
        argv.append("--no-progress")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "hkt_core.cli.main", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    print(f"hkt: starting {args.nproc} processes (torch.distributed, "
          f"{'nccl' if args.device == 'cuda' else 'gloo'}) into {out}", file=sys.stderr, flush=True)
    return subprocess.call(cmd, env=env)


def _print_summary(run) -> None:
    """The run's numbers, then every place the run wrote."""
    from ..train import run as files

    s = run.summary
    metric = s["primary_metric"]
    print(f"best epoch {s['best_epoch']}/{s['epochs']}: val {metric} {s['val'][metric]:.4f}, "
          f"test {metric} {s['test'][metric]:.4f}")
    what = "parent" if run.config.get("trains_parent") else "child"
    print(f"{what}: {s['parameters']:,} parameters, {s['latency_ms_per_sample']:.4f} ms per sample "
          f"(batch {s['latency_batch']}, {s['device']})")
    print(f"run folder: {run.path}")
    for name, what in ((files.BEST, "the best checkpoint (`hkt export` exports it)"),
                       (files.SUMMARY, "the numbers above"), (files.METRICS, "one line per epoch"),
                       (files.CURVES, "the training curves")):
        if (run.path / name).is_file():
            print(f"  {name:<18} {what}")
    board = run.path / files.TENSORBOARD
    if board.is_dir():
        print(f"tensorboard: {board} (tensorboard --logdir {board})")
    parent = s.get("parent", {})
    if parent.get("source") == "cache":
        print(f"parent: {parent['path']} (cached, weights_sha256 {str(parent.get('weights_sha256', ''))[:12]})")


# -- eval / export -----------------------------------------------------------------------------

def run_eval(args) -> int:
    from ..config import structure
    from ..config import TrainConfig
    from ..plugins.host import default_manager
    from ..train.loop.data import load_splits
    from ..train.folders.run import load_run
    from ..train.setup.training import evaluate

    from ..trust import scope

    manager = default_manager()
    run = load_run(args.run_dir, manager, trust_code=args.trust_code)
    card = run.card
    train = structure(run.config["train"], TrainConfig)
    with scope(run.origin()):
        splits = load_splits(card, train, manager)
    task = manager.lookup("tasks", card.task)
    import torch

    values = evaluate(run.child(args.which), getattr(splits, args.split), task, batch_size=train.batch_size,
                      device=torch.device("cpu"), manager=manager)
    print(f"{run.path} ({args.which} checkpoint) on the {args.split} split:")
    for k, v in values.items():
        print(f"  {k:<10} {v:.6f}")
    return 0


def run_export(args) -> int:
    from ..train.folders.export import export_run
    from ..train.folders.run import load_run

    path, diff = export_run(load_run(args.run_dir, trust_code=args.trust_code), args.format, args.out)
    print(f"exported the child to {path} ({args.format}); output checked against the child: "
          f"max difference {diff:.3g}")
    return 0


# -- compare / demo ----------------------------------------------------------------------------

def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{what} {text!r} is invalid: comma-separated integers, e.g. 0,1,2") from None


def _run_options(args) -> dict:
    """The overrides ``hkt compare`` and ``hkt demo`` pass to every run."""
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads} is invalid: an integer >= 1 (torch intra-op threads per run)")
    return {k: v for k, v in {"epochs": getattr(args, "epochs", None), "device": getattr(args, "device", None),
                              "threads": args.threads}.items() if v is not None}


def _print_written(written: dict[str, Path], out: Path) -> None:
    print(f"\ntable: {written['markdown']} (and {written['json']})")
    if "chart" in written:
        print(f"chart: {written['chart']}")
    print(f"runs: {out}/<method>-seed<S>/ (each with its curves.png, metrics.jsonl and summary.json)")


def run_compare(args) -> int:
    from ..train.setup.compare import format_table, paired_lines, run_comparison, write_comparison

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = _ints(args.seeds, "seeds")
    if not methods or not seeds:
        raise ConfigError("--methods and --seeds each need at least one entry")
    out = Path(args.out or f"runs/compare-{args.pair}")
    say = lambda m: print(f"hkt: {m}", file=sys.stderr, flush=True)  # noqa: E731
    rows = run_comparison(args.pair, methods, seeds, out, say=say, settings=args.settings, workers=args.workers,
                          **_run_options(args))
    print(format_table(rows), end="")
    lines = paired_lines(rows)
    if lines:
        print("\n".join(["", *lines]))
    _print_written(write_comparison(out, args.pair, rows), out)
    return 0


def demo_seeds(args) -> list[int]:
    """The demo's seeds: ``--seeds 0,1,2`` (as ``hkt compare``), ``--num-seeds N``, or the old
    ``--seeds N`` (a count, deprecated: a bare number without a comma)."""
    if args.seeds is not None and args.num_seeds is not None:
        raise ConfigError("--seeds and --num-seeds exclude each other: give the seeds (0,1,2) or their number")
    count, flag, given = args.num_seeds, "--num-seeds", str(args.num_seeds)
    if args.seeds is not None and "," not in args.seeds and args.seeds.strip().isdigit():
        count, flag, given = int(args.seeds), "--seeds", args.seeds.strip()
        print(f"hkt demo: --seeds {count} as a count is deprecated and will mean the seed list [{count}] in the "
              f"next release; use --num-seeds {count} (or --seeds {','.join(map(str, range(max(count, 1))))})",
              file=sys.stderr)
    if count is not None:
        seeds = list(range(count))
    elif args.seeds is not None:
        seeds, flag, given = _ints(args.seeds, "seeds"), "--seeds", args.seeds
    else:
        seeds = list(range(DEMO_SEEDS))
    if len(set(seeds)) < 3:
        raise ConfigError(f"{flag} {given} is invalid: at least 3 seeds, so that each difference to the baseline "
                          f"can be tested against the seed-to-seed noise")
    return seeds


def run_demo(args) -> int:
    from ..plugins.host import default_manager
    from ..train.setup.compare import format_table, run_comparison, write_comparison

    seeds = demo_seeds(args)
    manager = default_manager()
    if DEMO_PAIR not in manager.registry("pairs"):
        raise ConfigError(f"the demo pair {DEMO_PAIR!r} is not registered: it comes with the classification "
                          f"plugin (pip install -e plugins/hkt-vision)")
    out = Path(args.out)
    say = lambda m: print(f"hkt: {m}", file=sys.stderr, flush=True)  # noqa: E731
    # the same code path, settings and default threads as `hkt compare digits-demo`: the same numbers
    rows = run_comparison(DEMO_PAIR, DEMO_METHODS, seeds, out, say=say, workers=args.workers,
                          **_run_options(args))
    rows = _with_parent_row(manager, out, rows)
    card = manager.lookup("pairs", DEMO_PAIR)
    print(f"\n{DEMO_PAIR}: {card.description}")
    print(format_table(rows), end="")
    print(demo_verdicts(rows, card))
    _print_written(write_comparison(out, DEMO_PAIR, rows), out)
    return 0


def demo_verdicts(rows: list[dict], card) -> str:
    """The settings used, each method's paired difference to the baseline and whether it is beyond
    the seed-to-seed noise, and where the full benchmark is."""
    from ..train.methods.kd import KDOptions
    from ..train.setup.compare import paired_lines

    h, t = card.hkt, card.train
    kd = KDOptions()   # the card's pin (the old [train] spelling) where it has one, else KD's own defaults
    temperature = t.kd_temperature if t.kd_temperature is not None else kd.temperature
    weight = t.kd_weight if t.kd_weight is not None else kd.weight
    lines = [f"\nHKT settings (the card's [hkt]): mixture {h.mixture}, lam {h.lam:g}, alphas "
             f"({', '.join(f'{a:g}' for a in h.alphas)}), inherit_loss {h.inherit_loss}, directions "
             f"{h.directions if isinstance(h.directions, str) else ', '.join(h.directions)}; KD: temperature "
             f"{temperature:g}, weight {weight:g}",
             *paired_lines(rows),
             "This demo is small (a 438-parameter child, few seeds). The measured comparison of baseline, KD "
             "and the HKT variants in the paper's regime is docs/RESULTS.md."]
    return "\n".join(lines)


def _with_parent_row(manager, out: Path, rows: list[dict]) -> list[dict]:
    """The cached parent as the table's first row (the reference the children learn from)."""
    import json

    from ..config import read_toml
    from ..train.setup.compare import _row

    for row in rows:
        config = read_toml(out / f"{row['method']}-seed0" / "config.toml")
        folder = config.get("parent", {}).get("path")
        if config.get("parent", {}).get("source") == "cache" and folder and Path(folder, "summary.json").is_file():
            summary = json.loads(Path(folder, "summary.json").read_text(encoding="utf-8"))
            parent_row = _row("parent", [summary])
            return [parent_row, *rows]
    return rows
