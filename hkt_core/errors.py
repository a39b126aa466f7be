"""Exceptions the framework raises, so callers can catch the framework's own failures."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HKTError(Exception):
    """Base class of every error the framework raises on purpose."""


class RegistryError(HKTError, KeyError):
    """A name is unknown to a registry, or registered twice."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ConfigError(HKTError, ValueError):
    """A configuration value breaks a rule; the message names the field, the value and what is allowed."""


class TraceError(HKTError, RuntimeError):
    """A model could not be traced; the message names the construct and the fix."""


class AlignmentError(HKTError, ValueError):
    """Two models could not be aligned, or a manual alignment is invalid."""


class CheckpointError(HKTError, RuntimeError):
    """A checkpoint is missing, corrupt or belongs to another model."""


class TrainingDiverged(HKTError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class DataError(ConfigError):
    """The data set holds values hkt cannot learn from (NaN or infinity); the message names the
    split and the sample."""


class SampleError(DataError):
    """A sample's shape, dtype or structure differs from the other samples of its split; the message
    names the data set, the split, the sample's index, what was expected and what was found.

    Raised while a batch is put together, possibly in a data-loader worker: the worker's copy comes
    back as this class with the worker's traceback in its text, of which only the message is kept."""

    def __init__(self, message: str = "") -> None:
        super().__init__(_worker_message(message))


def _worker_message(text: str) -> str:
    """The message of an exception re-raised by a data-loader worker (``Caught X in DataLoader worker
    process 0.`` then the traceback, whose last line is ``module.X: message``), else ``text``."""
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    head, sep, message = last.partition(": ")
    return message if sep and " " not in head else last


class UnsafePathError(HKTError, ValueError):
    """A file or folder hkt would write inside a folder is a link, or leads out of that folder."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says what the run folder kept and how to resume."""


class PeerLost(HKTError, RuntimeError):
    """Another process of a distributed run stopped; the message says what was kept and how to resume."""


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The choices nearest to ``name``, for every "did you mean" message of the framework.

    Close spellings first (best first); failing those, choices in the same dotted scope as
    ``name`` (``layer1.9`` suggests ``layer1.*``); failing those, the first ``n`` choices, in the
    order given.
    """
    choices = list(dict.fromkeys(choices))
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.4)
    if near:
        return near
    prefix = name.split("#", 1)[0].rsplit(".", 1)[0]
    same_scope = [c for c in choices if c.startswith(prefix)] if prefix else []
    return (same_scope or choices)[:n]


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    choices = sorted(set(choices))
    if not choices:
        return f"unknown {kind} {name!r}: no {kind} are registered"
    near = closest(name, choices)
    return (
        f"unknown {kind} {name!r}; closest: {', '.join(near)} "
        f"(all {len(choices)}: `hkt list {kind}`)"
    )


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"did you mean 'ga'?"`` for a close spelling of ``name`` among ``choices`` (the closest
    first, at most three), else ``""``: a guess only where one is near."""
    near = difflib.get_close_matches(str(name), list(dict.fromkeys(choices)), n=3, cutoff=0.6)
    if not near:
        return ""
    return f"did you mean {' or '.join(repr(n) for n in near)}?"


def not_registered_message(setting: str, value: str, kind: str, choices: Iterable[str]) -> str:
    """One line for a setting naming something its registry does not hold: the setting and its
    value, a "did you mean" when a registered name is close, and every registered name."""
    choices = sorted(set(choices))
    hint = did_you_mean(value, choices)
    return (f"{setting} = {value!r} is not a registered {kind.rstrip('s')}"
            f"{'; ' + hint if hint else ''} (registered {kind}: {', '.join(choices) or 'none'}; `hkt list {kind}`)")
