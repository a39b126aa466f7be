"""What to compress and how hard: a frozen record validated at construction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from hkt_core import ConfigError

#: The ways a rank can be chosen; a policy uses exactly one.
RANK_RULES = ("rank", "energy", "budget", "ranks")

DEFAULT_HEADS = 2


def _to_ranks(value: Any) -> dict[str, int] | None:
    return None if value is None else dict(value)


@attrs.frozen
class CompressionPolicy:
    """How :func:`hkt_inhernet.compress_model` picks layers and ranks.

    Exactly one rank rule:

    - ``rank``: the same rank for every compressed layer (clamped to a layer's full rank);
    - ``energy``: per layer, the smallest rank keeping this fraction of the squared singular values;
    - ``budget``: the whole model's parameters after compression, as a fraction of before
      (``0.25`` = "compress to 25% of the parameters"); ranks are shared out across layers;
    - ``ranks``: an explicit ``{qualified layer name: rank}`` plan (what
      :meth:`CompressionReport.as_policy` returns, to rebuild the same architecture). The skip rules
      do not apply to a plan: the named layers are compressed, the others are not.

    ``heads`` is M, the number of up heads per layer. By default the first convolution, the
    classifier (the last compressible layer in module order) and layers where the inherited form
    would not have fewer parameters are left dense; ``exclude`` adds fnmatch patterns of qualified
    names to leave dense.
    """

    rank: int | None = None
    energy: float | None = None
    budget: float | None = None
    ranks: dict[str, int] | None = attrs.field(default=None, converter=_to_ranks)
    heads: int = DEFAULT_HEADS
    skip_first_conv: bool = True
    skip_classifier: bool = True
    skip_unprofitable: bool = True
    exclude: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        chosen = [name for name in RANK_RULES if getattr(self, name) is not None]
        if len(chosen) != 1:
            got = ", ".join(chosen) if chosen else "none"
            raise ConfigError(f"a compression policy needs exactly one of rank, energy, budget or "
                              f"ranks; got {got}")
        if self.rank is not None and not _is_int(self.rank, 1):
            raise ConfigError(f"rank must be an integer >= 1, got {self.rank!r}")
        if self.energy is not None and not (_is_number(self.energy) and 0.0 < self.energy <= 1.0):
            raise ConfigError(f"energy must be a fraction in (0, 1] of the squared singular values "
                              f"to keep, got {self.energy!r}")
        if self.budget is not None and not (_is_number(self.budget) and 0.0 < self.budget < 1.0):
            raise ConfigError(f"budget must be a fraction in (0, 1) of the model's parameters, "
                              f"got {self.budget!r}")
        if self.ranks is not None:
            for name, rank in self.ranks.items():
                if not _is_int(rank, 1):
                    raise ConfigError(f"ranks[{name!r}] must be an integer >= 1, got {rank!r}")
        if not _is_int(self.heads, 1):
            raise ConfigError(f"heads must be an integer >= 1, got {self.heads!r}")

    @property
    def rule(self) -> str:
        """Which rank rule this policy uses (one of :data:`RANK_RULES`)."""
        return next(name for name in RANK_RULES if getattr(self, name) is not None)

    def describe(self) -> str:
        value = getattr(self, self.rule)
        shown = f"{len(value)} layers" if self.rule == "ranks" else value
        return f"{self.rule}={shown}, heads={self.heads}"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **defaults: Any) -> CompressionPolicy:
        """A policy from a plain mapping (method options, TOML); unknown keys are refused."""
        allowed = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(f"unknown compression option(s) {', '.join(unknown)}; allowed: "
                              f"{', '.join(sorted(allowed))}")
        merged = {**defaults, **options}
        if any(merged.get(rule) is not None for rule in RANK_RULES if rule in options):
            for rule in RANK_RULES:  # an explicit rule replaces a default one
                if rule not in options:
                    merged.pop(rule, None)
        return cls(**merged)


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
