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


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The registered names nearest to ``name`` (for 'did you mean' messages)."""
    choices = sorted(set(choices))
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    return near or choices[:n]


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    choices = sorted(set(choices))
    if not choices:
        return f"unknown {kind} {name!r}: no {kind} are registered"
    near = closest(name, choices)
    return (
        f"unknown {kind} {name!r}; closest: {', '.join(near)} "
        f"(all {len(choices)}: `hkt list {kind}`)"
    )
