"""Plugin discovery and isolation.

:func:`get_plugin_manager` builds a manager: it adds the hook specs, loads every entry point of
group ``hkt`` (unless ``autoload=False``), registers any extra plugin objects given, then asks each
plugin, one at a time, for its registrations. A plugin that fails to import or whose hook raises
is recorded with its error and none of its registrations are kept; the others are unaffected.

``HKT_DISABLE_PLUGINS=a,b`` skips entry points by name. The module-level conveniences
(:func:`hkt_core.lookup` and friends) use a lazily built default manager;
:func:`reset_default_manager` drops it (tests use this after installing a plugin).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import traceback
import types
from typing import Any

import pluggy

from . import hookspecs
from .hookspecs import PROJECT
from .registry import KIND_ALIASES, KINDS, PluginInfo, Registrar, Registry

ENTRY_POINT_GROUP = "hkt"
DISABLE_ENV = "HKT_DISABLE_PLUGINS"


def disabled_from_env() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _short_error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _hashable(plugin: object, name: str) -> object:
    """``plugin``, or a module holding its attributes when it is not hashable (pluggy keeps plugins
    in sets and reads their hooks with ``getattr_static``)."""
    try:
        hash(plugin)
    except TypeError:
        module = types.ModuleType(f"hkt_plugin_{name}", getattr(plugin, "__doc__", None))
        module.__dict__.update({k: getattr(plugin, k) for k in dir(plugin) if not k.startswith("__")})
        return module
    return plugin


def _reraise_interrupt(exc: BaseException) -> None:
    """Ctrl-C still stops hkt; any other exception of a plugin (``SystemExit`` too) is its failure."""
    if isinstance(exc, KeyboardInterrupt):
        raise exc


class PluginManager:
    """Owns the pluggy manager, one registry per kind and the record of every plugin."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        for registry in self.registries.values():
            registry.missing_hint = self.missing_hint
        self.plugins: dict[str, PluginInfo] = {}

    def __repr__(self) -> str:
        ok = sum(p.ok for p in self.plugins.values())
        return f"<PluginManager {ok}/{len(self.plugins)} plugins loaded>"

    # -- loading -------------------------------------------------------------------------------
    def load_entry_points(self, disabled: set[str] | None = None) -> None:
        disabled = disabled_from_env() if disabled is None else disabled
        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name != "core", e.name))
        seen: set[str] = set()
        for ep in eps:
            if ep.name in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(ep.name)
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in disabled:
                self.plugins[ep.name] = PluginInfo(ep.name, dist, version, disabled=True)
                continue
            try:
                obj = ep.load()
            except BaseException as exc:  # a broken plugin must not take the others down, SystemExit included
                _reraise_interrupt(exc)
                self.plugins[ep.name] = PluginInfo(ep.name, dist, version, error=_short_error(exc))
                continue
            self.register(obj, ep.name, distribution=dist, version=version)

    def register(self, plugin: object, name: str, *, distribution: str | None = None,
                 version: str | None = None) -> PluginInfo:
        """Register one plugin object and commit its registrations, all or nothing."""
        if name in self.plugins and self.plugins[name].ok:
            info = PluginInfo(name, distribution, version,
                              error=f"a plugin named {name!r} is already loaded")
            self.plugins[name] = info
            return info
        try:
            self.pm.register(_hashable(plugin, name), name=name)
        except Exception as exc:  # pluggy validation: unknown hook, bad arguments
            info = PluginInfo(name, distribution, version, error=_short_error(exc))
            self.plugins[name] = info
            return info
        staged: list[tuple[str, str, Any, dict]] = []
        taken: dict[tuple[str, str], str] = {}
        try:
            for hook, kind in [*((k, k) for k in KINDS), *KIND_ALIASES.items()]:
                caller = self._caller_for(f"hkt_register_{hook}", name)
                if caller is not None:
                    if hook != kind:
                        _deprecated(f"plugin {name!r} implements hkt_register_{hook}: it is now "
                                    f"hkt_register_{kind} (the old name keeps working for one release)")
                    caller(registry=Registrar(self.registries[kind], name, staged, taken))
        except BaseException as exc:
            _reraise_interrupt(exc)
            self.pm.unregister(name=name)
            info = PluginInfo(name, distribution, version, error=_short_error(exc))
            self.plugins[name] = info
            return info
        registered: dict[str, list[str]] = {}
        for kind, entry_name, obj, meta in staged:
            description = meta.pop("description", None)
            self.registries[kind].add(entry_name, obj, plugin=name, description=description, **meta)
            registered.setdefault(kind, []).append(entry_name)
        info = PluginInfo(name, distribution, version, registered=registered)
        self.plugins[name] = info
        return info

    def _caller_for(self, hook: str, name: str):
        """A pluggy caller of ``hook`` holding plugin ``name``'s implementations and every hook
        wrapper (None when the plugin does not implement it)."""
        impls = getattr(self.pm.hook, hook).get_hookimpls()
        if not any(i.plugin_name == name and not (i.hookwrapper or i.wrapper) for i in impls):
            return None
        others = {i.plugin for i in impls if i.plugin_name != name and not (i.hookwrapper or i.wrapper)}
        return self.pm.subset_hook_caller(hook, remove_plugins=others)

    # -- queries -------------------------------------------------------------------------------
    def missing_hint(self, kind: str) -> str:
        """``; plugin 'y' failed to load: ...`` for each plugin that could have registered a name of
        ``kind`` but did not load (the user's cards only count for pairs)."""
        parts = []
        for info in self.plugins.values():
            if info.name == "user" and kind != "pairs":
                continue
            if info.error:
                what = "has cards that failed to load" if info.name == "user" else "failed to load"
                parts.append(f"; plugin {info.name!r} {what}: {info.error}")
            elif info.disabled:
                parts.append(f"; plugin {info.name!r} is disabled ({DISABLE_ENV})")
        return "".join(parts)

    def registry(self, kind: str) -> Registry:
        if kind in KIND_ALIASES:
            _deprecated(f"registry kind {kind!r} is now {KIND_ALIASES[kind]!r} (the old name keeps working "
                        f"for one release)")
            kind = KIND_ALIASES[kind]
        try:
            return self.registries[kind]
        except KeyError:
            from ..errors import RegistryError, unknown_name_message

            raise RegistryError(unknown_name_message("kind", kind, KINDS)) from None

    def lookup(self, kind: str, name: str) -> Any:
        return self.registry(kind).get(name)


_said: set[str] = set()


def _deprecated(message: str) -> None:
    """A DeprecationWarning, once per process and message."""
    if message not in _said:
        _said.add(message)
        import warnings

        warnings.warn(message, DeprecationWarning, stacklevel=3)


def get_plugin_manager(*, autoload: bool = True, disabled: set[str] | None = None,
                       plugins: dict[str, object] | None = None) -> PluginManager:
    """A new manager. ``autoload`` loads entry points of group ``hkt``; ``plugins`` adds more by name.

    With ``autoload=False`` nothing is discovered, not even the built-ins: pass
    ``plugins={"core": hkt_core.builtins}`` to get them.
    """
    manager = PluginManager()
    if autoload:
        manager.load_entry_points(disabled)
    for name, plugin in (plugins or {}).items():
        manager.register(plugin, name)
    from .user import load_user_cards

    load_user_cards(manager)
    return manager


_default: PluginManager | None = None


def default_manager() -> PluginManager:
    global _default
    if _default is None:
        _default = get_plugin_manager()
    return _default


def resolve_manager(manager: PluginManager | None) -> PluginManager:
    """``manager``, or the process-wide manager when it is None.

    The public entry points that take ``manager=None`` (``hkt_core.align``, ``hkt_core.train``,
    :class:`~hkt_core.Family`, :func:`~hkt_core.load_run`, ...) resolve it here, once; below them the
    manager is passed down explicitly."""
    return default_manager() if manager is None else manager


def reset_default_manager() -> None:
    global _default
    _default = None


def lookup(kind: str, name: str) -> Any:
    """The object registered as ``name`` in registry ``kind``; unknown names list the closest."""
    return default_manager().lookup(kind, name)


def registry(kind: str) -> Registry:
    return default_manager().registry(kind)
