"""One registry object per kind of plugin-supplied thing.

A registry maps names to objects (classes, factories, records). Plugins never touch a registry
directly during discovery: each plugin's hook receives a :class:`Registrar` that stages its
additions, and the plugin manager commits them all at once only if the hook returned without
error. That is what keeps a broken plugin from leaving half of its registrations behind.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from ..errors import RegistryError, unknown_name_message

#: Every kind of thing a plugin can register, in the order `hkt plugins list` shows them.
KINDS: tuple[str, ...] = (
    "adapters",
    "models",
    "extractors",
    "transfers",
    "mixtures",
    "tasks",
    "metrics",
    "datasets",
    "pairs",
    "methods",
    "commands",
    "export_formats",
)
#: Old kind names that still work, deprecated: ``lookup("losses", ...)`` and the hook
#: ``hkt_register_losses`` reach the ``tasks`` registry (a kind of that name held tasks).
KIND_ALIASES: dict[str, str] = {"losses": "tasks"}


def plain_text(text: str) -> str:
    """reStructuredText roles and literals as plain text: ``:class:`a.B``` -> ``a.B``, double backquotes dropped."""
    text = re.sub(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`", r"\1", text)
    return re.sub(r"``([^`]+)``", r"\1", text).replace("`", "")


def _first_line(obj: Any) -> str:
    """The docstring's first sentence, whole (over as many lines as it takes), as plain text."""
    doc = inspect.getdoc(obj) or ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split()) if doc.strip() else ""
    match = re.search(r"(?<=[.!?])\s+(?=[A-Z(])", paragraph)
    return plain_text(paragraph[:match.start()] if match else paragraph)


@attrs.frozen
class Entry:
    """One registered object with where it came from."""

    name: str
    obj: Any
    plugin: str
    description: str = ""
    metadata: dict[str, Any] = attrs.field(factory=dict)


class Registry:
    """Names to objects for one kind; duplicates are errors that name both plugins."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        #: set by the plugin manager: why a name might be missing (plugins that failed to load)
        self.missing_hint: Callable[[str], str] | None = None

    def __repr__(self) -> str:
        return f"<Registry {self.kind}: {len(self._entries)} entries>"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def add(self, name: str, obj: Any, *, plugin: str = "user", description: str | None = None,
            **metadata: Any) -> Entry:
        """Register ``obj`` under ``name``; a name already taken raises :class:`RegistryError`."""
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"{self.kind}: a name must be a non-empty string, got {name!r}")
        if name in self._entries:
            first = self._entries[name].plugin
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: first by plugin {first!r}, "
                f"again by plugin {plugin!r}; rename one, or disable a plugin with "
                f"HKT_DISABLE_PLUGINS"
            )
        entry = Entry(name, obj, plugin, description if description is not None else _first_line(obj),
                      dict(metadata))
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            hint = self.missing_hint(self.kind) if self.missing_hint is not None else ""
            raise RegistryError(unknown_name_message(self.kind, name, self._entries) + hint) from None

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by an fnmatch wildcard such as ``"resnet*"``."""
        names = sorted(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def entries(self, pattern: str | None = None) -> list[Entry]:
        return [self._entries[n] for n in self.names(pattern)]


class Registrar:
    """What a plugin's ``hkt_register_<kind>`` hook receives: ``registrar.add(name, obj, **metadata)``.

    Additions are staged and only reach the registry when the whole plugin loaded cleanly.
    Names already registered (or staged twice) are refused right away, naming both plugins.
    """

    def __init__(self, registry: Registry, plugin: str, staged: list[tuple[str, str, Any, dict]],
                 taken: dict[tuple[str, str], str]) -> None:
        self.kind = registry.kind
        self._registry = registry
        self._plugin = plugin
        self._staged = staged
        self._taken = taken

    def __repr__(self) -> str:
        return f"<Registrar {self.kind} for plugin {self._plugin!r}>"

    def add(self, name: str, obj: Any, *, description: str | None = None, **metadata: Any) -> None:
        key = (self.kind, name)
        if name in self._registry:
            first = self._registry.entry(name).plugin
        else:
            first = self._taken.get(key)
        if first is not None:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: first by plugin {first!r}, "
                f"again by plugin {self._plugin!r}"
            )
        self._taken[key] = self._plugin
        self._staged.append((self.kind, name, obj, {"description": description, **metadata}))


@attrs.frozen
class PluginInfo:
    """What `hkt plugins list` shows for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    registered: dict[str, list[str]] = attrs.field(factory=dict)
    error: str | None = None
    disabled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.disabled

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)
