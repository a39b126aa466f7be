"""Where a method is registered: ``@method("name")`` on its class, in the file that defines it.

The decorator records the class in the table of the module that defines it, in definition order
(in the spirit of timm's ``@register_model``); a plugin hands its table to the host through the
``hkt_register_methods`` hook, as the core does with :data:`BUILTIN_METHODS`::

    @method("smooth")
    class LabelSmoothing(Method): ...

    @registers()
    def hkt_register_methods():
        return defined_methods(__name__)     # {"smooth": LabelSmoothing}

The host then applies its usual rules (a name taken by another plugin is refused, naming both).
"""

from __future__ import annotations

from typing import Any

#: module -> {name: method class}, in definition order
_DEFINED: dict[str, dict[str, type]] = {}
#: (module, name) -> the roles the core gives the method (:data:`ROLES`)
_ROLES: dict[tuple[str, str], frozenset[str]] = {}
#: roles of the core's methods: ``every-pair``: every pair must support it (``hkt pairs check`` and
#: the dry run require it); ``demo``: ``hkt demo`` trains it
ROLES = ("every-pair", "demo")

#: The methods the core defines, by name, in the order the CLI lists them (filled as the files of
#: :mod:`hkt_core.train.methods` are imported; :mod:`hkt_core.builtins` registers it).
BUILTIN_METHODS: dict[str, type] = {}


def method(name: str, *, roles: tuple[str, ...] = ()) -> Any:
    """Class decorator: registers the decorated :class:`~hkt_core.train.method.Method` subclass as
    ``name`` in the table of its module (:func:`defined_methods`) and sets ``cls.method_name``.
    ``roles`` are the core's (:data:`ROLES`); a plugin leaves them out."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"@method: a method name is a non-empty string without surrounding spaces, got {name!r}")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"@method({name!r}): unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}")

    def register(cls: type) -> type:
        from .method import Method

        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"@method({name!r}) decorates a Method subclass, got {cls!r}")
        table = _DEFINED.setdefault(cls.__module__, {})
        earlier = table.get(name)
        # the same class defined again (its module executed anew, as by importlib.reload) replaces it
        if earlier is not None and earlier is not cls and earlier.__qualname__ != cls.__qualname__:
            raise ValueError(f"@method({name!r}): {cls.__module__} already defines {earlier.__name__} "
                             f"under that name")
        table[name] = cls
        _ROLES[(cls.__module__, name)] = frozenset(roles)
        if "method_name" not in cls.__dict__:   # a class registered twice keeps its first name
            cls.method_name = name
        if cls.__module__.split(".")[0] == "hkt_core":
            BUILTIN_METHODS[name] = cls
        return cls

    return register


def defined_methods(module: str) -> dict[str, type]:
    """The methods ``@method`` registered in ``module`` and the modules under it, in definition order."""
    out: dict[str, type] = {}
    for where, table in _DEFINED.items():
        if where == module or where.startswith(module + "."):
            out.update(table)
    return out


def methods_with_role(role: str, table: dict[str, type] | None = None) -> tuple[str, ...]:
    """The names of ``table`` (default :data:`BUILTIN_METHODS`) that have ``role`` (:data:`ROLES`),
    in the table's order: ``every-pair`` is the pre-flight's required set, ``demo`` the demo's rows."""
    if role not in ROLES:
        raise ValueError(f"unknown method role {role!r}; known: {', '.join(ROLES)}")
    table = BUILTIN_METHODS if table is None else table
    return tuple(n for n, cls in table.items() if role in _ROLES.get((cls.__module__, n), ()))


__all__ = ["BUILTIN_METHODS", "ROLES", "defined_methods", "method", "methods_with_role"]
