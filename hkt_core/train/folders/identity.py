"""When a run folder holds "the same run": one rule for reusing a finished run and for resuming one.

Two resolved configurations (``RunSpec.config()``, stored as ``config.toml``) describe the same run
when they agree on every setting: the pair and method, every ``[train]``, ``[hkt]`` and
``[method_options]`` value and the whole ``[card]``, compared as config.toml stores them. Left out
are the entries that name one run (:data:`RUN_SPECIFIC`) and the settings that never change the
trained weights (:data:`NOT_COMPARED`).

``hkt compare`` and the benchmarks reuse a finished run only when nothing differs
(:func:`hkt_core.train.reuse.train_or_reuse`). ``--resume`` continues a run
only when nothing differs except the optimisation settings in :data:`RESUMABLE`; such a change is
explicit (the user passed it), and is written to the run's ``history.jsonl`` and ``config.toml``.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

from ...config import canonical_directions, read_toml, to_toml
from ...errors import CheckpointError, ConfigError
from ...io import atomic_write_text
from .files import HISTORY

#: Entries of config.toml that describe one run rather than what it trains.
RUN_SPECIFIC = ("run", "parent", "world_size")
#: Settings that never change what a run computes (the parent cache key leaves them out too).
NOT_COMPARED = frozenset({"train.device", "train.num_workers", "train.compile", "train.channels_last",
                          "card.description", "card.source_folder"})
#: Settings added after runs already existed: a configuration without one had its default.
DEFAULTED = {"train.precision": "fp32", "train.train_samples": 0,
             "train.fold_parent_bn": False, "train.fused_attention": False,
             # the aligning methods' option (hkt_core.train.methods.ALIGNMENT_CHOICES); other methods
             # never had it, which compares the same on both sides
             "method_options.alignment": "auto"}
#: Numerics switches that change results only at float32 rounding: a resumed run keeps the values
#: it was recorded with (runs from before a switch existed had it off), whatever the new settings say.
RECORDED = ("train.fold_parent_bn", "train.fused_attention")
#: Settings ``--resume`` may change, with a record in the run's history.
RESUMABLE = ("train.lr", "train.grad_clip", "train.weight_decay")
#: Settings a run started before they were recorded does not hold, and whose value then is unknown
#: (the thread count depended on the command): such a run is never reused as the same run, but
#: ``--resume`` continues it with the value asked for now, recorded in its history. A card's own
#: ``[train]`` (under ``[card]``) had the default.
UNRECORDED = {"train.threads": 1}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(data, (list, tuple)):
        return {prefix[:-1]: [_normal(v) for v in data]}
    return {prefix[:-1]: _normal(data)}


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a configuration as config.toml stores it (TOML drops None, tuples become lists)."""
    data = tomllib.loads(to_toml({k: v for k, v in config.items() if k not in RUN_SPECIFIC}))
    from ...config import REMOVED_SETTINGS

    out = {k: v for k, v in _flatten(data).items()
           if k not in NOT_COMPARED and k not in REMOVED_SETTINGS and k.removeprefix("card.") not in REMOVED_SETTINGS}
    for key in [k for k in out if k == "hkt.directions" or k.endswith(".hkt.directions")]:
        out[key] = _normal(canonical_directions(out[key]))   # a run written with an earlier spelling
    # the run's [train] and the card's own [train] (stored under [card]) both gained them
    for prefix, present in (("", "train" in data), ("card.", "train" in data.get("card", {}))):
        if present:
            for key, default in DEFAULTED.items():
                out.setdefault(prefix + key, default)
    if "train" in data.get("card", {}):
        for key, default in UNRECORDED.items():
            out.setdefault("card." + key, default)
    from ...config import CHANGED_DEFAULTS, MOVED_SETTINGS

    for key in (*CHANGED_DEFAULTS, *MOVED_SETTINGS):  # the card's copy: what trains is the run's own value
        out.pop("card." + key, None)
    return out


def with_moved_settings(config: dict[str, Any], takes: Any) -> dict[str, Any]:
    """``config`` (as config.toml stores it) with the settings that moved
    (:data:`hkt_core.config.MOVED_SETTINGS`: ``[train] kd_temperature`` and ``kd_weight``, recorded by
    every run before they became the distilling methods' options) spelt anew: under
    ``[method_options]`` where the method takes the option (``takes``: the option names of the run
    compared with, its ``[method_options]``), left out otherwise. A configuration without them is
    returned as it is."""
    from ...config import MOVED_SETTINGS

    train = config.get("train")
    if not isinstance(train, dict) or not any(k.split(".", 1)[1] in train for k in MOVED_SETTINGS):
        return config
    config = {**config, "train": dict(train)}
    options = dict(config.get("method_options") or {})
    for key, option in MOVED_SETTINGS.items():
        value = config["train"].pop(key.split(".", 1)[1], None)
        if value is not None and option in takes and option not in options:
            options[option] = value
    if options or "method_options" in config:
        config["method_options"] = options
    return config


def differences(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (stored value, new value)}`` for every compared setting that differs (a run
    recorded before settings moved is read in their new spelling, :func:`with_moved_settings`)."""
    stored = with_moved_settings(stored, set(new.get("method_options") or {}))
    new = with_moved_settings(new, set(stored.get("method_options") or {}))
    a, b = _compared(stored), _compared(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def difference_lines(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: run has X, now Y`` for every compared setting that differs."""
    return [f"{k}: run has {a!r}, now {b!r}" for k, (a, b) in differences(stored, new).items()]


def describe(diffs: dict[str, tuple[Any, Any]], limit: int = 6) -> str:
    parts = [f"{k}: run has {a!r}, now {b!r}" for k, (a, b) in list(diffs.items())[:limit]]
    more = len(diffs) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def check_resume(folder: Path, new: dict[str, Any], epoch: int, say=None) -> dict[str, tuple[Any, Any]]:
    """Refuse a resume under other settings, except an explicit change of :data:`RESUMABLE` ones,
    which is recorded in ``history.jsonl`` and applied to ``config.toml``; returns the changes."""
    stored = read_toml(folder / "config.toml")
    # the numerics switches continue as recorded (the run's own and its card's copy of [train])
    diffs = {k: v for k, v in differences(stored, new).items() if k.removeprefix("card.") not in RECORDED}
    refused = {k: v for k, v in diffs.items()
               if k not in RESUMABLE and not (k in UNRECORDED and v[0] is None)}
    if refused:
        raise ConfigError(f"--resume continues {folder} with the settings it was started with; these differ: "
                          f"{describe(refused)}. Only {', '.join(RESUMABLE)} may change on --resume; drop the other "
                          f"changes, or start a new run")
    if not diffs:
        return {}
    record = {"event": "resume", "epoch": epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "changes": {k: {"from": a, "to": b} for k, (a, b) in diffs.items()}}
    append_history(folder, record)
    for key, (_, value) in diffs.items():
        section, name = key.split(".", 1)
        stored.setdefault(section, {})[name] = value
    atomic_write_text(folder / "config.toml", to_toml(stored))
    if say is not None:
        changed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diffs.items())
        say(f"resuming {folder} after epoch {epoch} with {changed} (recorded in {HISTORY})")
    return diffs


def recorded_numerics(folder: Path) -> dict[str, Any]:
    """The :data:`RECORDED` settings of the run in ``folder`` as ``{name: value}`` (``train.`` dropped)."""
    compared = _compared(read_toml(Path(folder) / "config.toml"))
    return {key.split(".", 1)[1]: compared[key] for key in RECORDED if key in compared}


def append_history(folder: Path, record: dict[str, Any]) -> None:
    """Add one event to the run's ``history.jsonl`` (rewritten atomically)."""
    file = folder / HISTORY
    old = file.read_text(encoding="utf-8") if file.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(file, old + json.dumps(record) + "\n")


def read_history(folder: Path) -> list[dict[str, Any]]:
    file = Path(folder) / HISTORY
    if not file.is_file():
        return []
    from .schemas import read_text

    records = []
    for n, line in enumerate(read_text(file, what="a run history").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise CheckpointError(f"{file}: line {n} is not a JSON object hkt wrote (corrupt or crafted)") from None
        if not isinstance(record, dict):
            raise CheckpointError(f"{file}: line {n} must be a JSON object (a table), not {type(record).__name__}")
        records.append(record)
    return records
