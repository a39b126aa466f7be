"""The plugin host: discovery of plugins through entry points (:mod:`.host`), the hook
specifications (:mod:`.hookspecs`), the registries (:mod:`.registry`), declarative registration
(:mod:`.registration`), the hook marker (:mod:`.markers`) and the user's cards as plugin ``user``
(:mod:`.user`).

``hkt_core.plugins`` keeps serving the host's names (``default_manager``, ``PluginManager``, ...)."""

from .host import (DISABLE_ENV, ENTRY_POINT_GROUP, PluginInfo, PluginManager, default_manager,
                   disabled_from_env, get_plugin_manager, lookup, registry, reset_default_manager,
                   resolve_manager)
from .markers import hookimpl

__all__ = ["DISABLE_ENV", "ENTRY_POINT_GROUP", "PluginInfo", "PluginManager", "default_manager",
           "disabled_from_env", "get_plugin_manager", "hookimpl", "lookup", "registry", "reset_default_manager",
           "resolve_manager"]
