"""What hkt trusts: which ``module:callable`` references it may import and call.

A registered name (from an installed hkt plugin) always resolves: the plugin was installed on
purpose. A ``module:callable`` reference names code, and hkt calls it with options read from a
file, so it is held to one rule wherever it comes from (the command line, the Python API, a card
the user added, a run folder):

* it may name the user's own code: a module found on ``sys.path`` (the current directory
  included) outside the standard library and the installed packages, or a module beside the card
  it was written in (``hkt pairs add`` records the folder the card came from);
* code of an installed hkt plugin (the core included) is reached only through what the plugin
  registered: ``hkt_vision.models:resnet20`` resolves only if that object is registered as a model
  (or a data set, where a data set is expected), and is then mapped to its registered name with a
  one-line deprecation notice; any other function of a plugin (``hkt_core.io:atomic_write_text``,
  ``hkt_core.cli.main:main``) is refused;
* it never names the standard library (``os:system``, ``builtins:eval``, ``subprocess:run``) or
  another installed package (``torch.hub:load``, ``numpy:load``): those are refused before
  anything is imported, with one line naming the reference.

The object reached must itself come from such code (``mymodule:os.system`` is refused too), must be
a class or a function (a model class must be an ``nn.Module``), and the path to it never passes
through a private or special attribute (``mymodule:make.__globals__`` is refused before anything
is imported). Resolving a reference never leaves a folder on ``sys.path``: the folder a user module
was found in is on it only while that module is imported, after the installed packages, so a file
in the current folder never shadows the standard library or an installed package.

A run folder is data. Opening one (``hkt eval``, ``hkt export``) applies the same rule and, in
addition, imports a user module it names only if that module is importable from where the user
stands (``sys.path`` and the current directory), never from a folder the run folder points to,
unless the user opts in with ``--trust-code`` (``trust_code=True``).

The rule in force is an :class:`Origin`, set for a block of code with :func:`scope` by whoever
opened the card or run folder; :func:`resolve_reference` applies it.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.machinery
import importlib.metadata
import os
import re
import site
import sys
import sysconfig
import types
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class UntrustedReference(ConfigError):
    """A ``module:callable`` reference names code hkt does not run (standard library, other packages)."""


@attrs.frozen
class Origin:
    """Where references come from, and so where their modules may be found.

    ``what`` names the source in messages. ``folders`` are searched after ``sys.path`` (the folder
    a user card came from). ``received`` marks a run folder: its ``folders`` are searched only
    when ``trust_code`` is set.
    """

    what: str = "the command line"
    folders: tuple[Path, ...] = ()
    received: bool = False
    trust_code: bool = False

    def search_folders(self) -> tuple[Path, ...]:
        return self.folders if (self.trust_code or not self.received) else ()


_DEFAULT = Origin()
_current: contextvars.ContextVar[Origin | None] = contextvars.ContextVar("hkt_trust_origin", default=None)


def current_origin() -> Origin:
    """The rule in force: the innermost :func:`scope`, else that of the command line."""
    return _current.get() or _DEFAULT


@contextlib.contextmanager
def scope(origin: Origin) -> Iterator[Origin]:
    """Resolve references under ``origin`` inside the ``with`` block."""
    token = _current.set(origin)
    try:
        yield origin
    finally:
        _current.reset(token)


def card_origin(card: Any) -> Origin:
    """The origin of a card's references: the card's recorded folder is searched after sys.path."""
    folder = getattr(card, "source_folder", None)
    return Origin(f"card {card.name!r}", (Path(folder),) if folder else ())


def run_origin(run_dir: str | Path, card_folder: str | None, *, trusted_folders=frozenset(),
               trust_code: bool = False) -> Origin:
    """The origin of a run folder's references (see the module docstring).

    ``card_folder`` is the folder the run's card was added from; when it is one of
    ``trusted_folders`` (folders of cards this user added) it is searched as for the card itself.
    Otherwise it and the run folder are searched only with ``trust_code``.
    """
    what = f"run folder {str(run_dir)!r}"
    if card_folder and card_folder in trusted_folders:
        return Origin(what, (Path(card_folder),))
    folders = tuple(Path(f) for f in (card_folder, run_dir) if f)
    return Origin(what, folders, received=True, trust_code=trust_code)


# -- classifying modules -----------------------------------------------------------------------

@lru_cache(maxsize=1)
def _plugin_distributions() -> frozenset[str]:
    names = set()
    for ep in importlib.metadata.entry_points(group="hkt"):
        if ep.dist is not None:
            names.add(_norm_dist(ep.dist.name))
    return frozenset(names)


@lru_cache(maxsize=1)
def _package_owners() -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in importlib.metadata.packages_distributions().items()}


def _norm_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = [paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    with contextlib.suppress(AttributeError):
        roots += site.getsitepackages()
    with contextlib.suppress(AttributeError):
        roots.append(site.getusersitepackages())
    roots += [sys.base_prefix + "/lib", sys.prefix + "/lib"]
    return tuple(Path(r).resolve() for r in roots if r)


def forbidden_reason(module: str) -> str | None:
    """Why code of ``module`` (a dotted name) is not run, or None when it may be (by name alone)."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return "the standard library"
    owners = _package_owners().get(top)
    if owners:
        if any(_norm_dist(d) in _plugin_distributions() for d in owners):
            return None
        return f"the installed package {owners[0]!r} (not an hkt plugin)"
    return None


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _search_path() -> list[str]:
    """``sys.path`` with the current directory first, as the import below sees it (the ``hkt``
    console script's ``sys.path`` starts with its own folder, not the current one)."""
    cwd = os.getcwd()
    paths = [cwd if p in ("", ".") else p for p in sys.path if isinstance(p, str)]
    return paths if cwd in paths else [cwd, *paths]


def _location(top: str, folders: tuple[Path, ...]) -> tuple[Path | None, str | None]:
    """Where ``top`` lives: (its file or package folder, the search folder it was found in)."""
    loaded = sys.modules.get(top)
    if loaded is not None:
        file = getattr(loaded, "__file__", None)
        spec_paths = list(getattr(getattr(loaded, "__spec__", None), "submodule_search_locations", None) or [])
        where = file or (spec_paths[0] if spec_paths else None)
        return (Path(where).resolve() if where else None), None
    spec, entry = None, None
    for entry in (*_search_path(), *(str(f) for f in folders)):
        spec = importlib.machinery.PathFinder.find_spec(top, [entry])
        if spec is not None:
            break
    if spec is None:
        return None, None
    where = spec.origin if spec.origin not in (None, "namespace") else next(iter(spec.submodule_search_locations or []), None)
    return (Path(where).resolve() if where else None), entry


# -- resolving ---------------------------------------------------------------------------------

def check_reference(ref: str, origin: Origin | None = None) -> tuple[str, str]:
    """Refuse a malformed or untrusted reference without importing anything; returns (module, attr)."""
    origin = origin or current_origin()
    module_name, sep, attr = ref.partition(":")
    if not sep or not _DOTTED.match(module_name) or not _DOTTED.match(attr):
        raise ConfigError(f"{ref!r} (from {origin.what}) is invalid: expected 'module:callable', "
                          f"e.g. 'mymodels:make_net'")
    private = [part for part in attr.split(".") if part.startswith("_")]
    if private:
        raise UntrustedReference(f"{ref!r} (from {origin.what}) is refused: {private[0]!r} is a private or special "
                                 f"attribute; name a public class or function defined in {module_name!r}")
    reason = forbidden_reason(module_name)
    if reason is not None:
        raise UntrustedReference(f"{ref!r} (from {origin.what}) is refused: it names {reason}; a reference "
                                 f"may name a registered name or your own module (docs/training.md, "
                                 f"'What hkt trusts')")
    return module_name, attr


#: What a reference is expected to name, by registry kind (for messages and the kind check).
_KIND_WORDS = {"models": "model", "datasets": "data set"}
_deprecations_said: set[str] = set()


def resolve_reference(ref: str, origin: Origin | None = None, *, kind: str | None = None, manager=None) -> Any:
    """Import the object ``module:attr`` names, after checking it against the trust rule.

    ``kind`` (a registry kind such as ``"models"``) and ``manager`` say what the reference must
    be; without them a reference into an installed plugin is refused (it can only be checked
    against what the plugin registered). See :func:`resolve_factory`.
    """
    return resolve_factory(ref, origin, kind=kind, manager=manager)[0]


def resolve_factory(ref: str, origin: Origin | None = None, *, kind: str | None = None,
                    manager=None) -> tuple[Any, str | None]:
    """``(object, registered name or None)`` for a ``module:callable`` reference.

    A reference into an installed hkt plugin resolves only to an object that plugin registered
    under ``kind`` in ``manager``; it is mapped to its registered name with a one-line deprecation
    notice. A reference into the user's own code must reach a class or function defined there
    (a model class must be an ``nn.Module``). Nothing is called.
    """
    origin = origin or current_origin()
    module_name, attr = check_reference(ref, origin)
    top = module_name.split(".")[0]
    plugin = _plugin_distribution(top)
    if plugin is not None:
        obj, name = _registered(ref, module_name, attr, kind, manager, origin, plugin)
        _say_deprecated(ref, name, kind, origin)
        return obj, name
    folders = origin.search_folders()
    where, entry = _location(top, folders)
    if where is None:
        raise ConfigError(_not_found(ref, top, origin))
    if _under(where, _installed_roots()) and _package_owners().get(top) is None:
        raise UntrustedReference(f"{ref!r} (from {origin.what}) is refused: module {top!r} is installed in "
                                 f"{where.parent}, not your own code")
    obj = _walk(_import_user_module(ref, module_name, entry), ref, module_name, attr, origin)
    owner = getattr(obj, "__module__", None)
    owner_top = owner.split(".")[0] if isinstance(owner, str) else top
    name = None
    if owner_top != top:
        reason = forbidden_reason(owner)
        if reason is not None:
            raise UntrustedReference(f"{ref!r} (from {origin.what}) is refused: it is {owner}.{attr} from {reason}; "
                                     f"wrap it in a function of your own module")
        owner_plugin = _plugin_distribution(owner_top)
        if owner_plugin is not None:  # a plugin's object re-exported by the user's module
            name = _registered_name(obj, kind, manager)
            if name is None:
                raise UntrustedReference(_unregistered(ref, origin, owner_plugin, kind))
    _check_kind(obj, ref, kind, origin)
    return obj, name


def _plugin_distribution(top: str) -> str | None:
    """The installed hkt plugin distribution that owns top-level module ``top``, if any."""
    for dist in _package_owners().get(top, ()):
        if _norm_dist(dist) in _plugin_distributions():
            return dist
    return None


def _registered_name(obj: Any, kind: str | None, manager) -> str | None:
    if kind is None or manager is None:
        return None
    for entry in manager.registry(kind).entries():
        if entry.obj is obj:
            return entry.name
    return None


def _registered(ref: str, module_name: str, attr: str, kind: str | None, manager, origin: Origin,
                plugin: str) -> tuple[Any, str]:
    """The registered object a reference into an installed plugin names, and its registered name."""
    if kind is None or manager is None:
        raise UntrustedReference(_unregistered(ref, origin, plugin, kind))
    entries = manager.registry(kind).entries()
    for entry in entries:  # by definition site first: nothing is imported
        if getattr(entry.obj, "__module__", None) == module_name and getattr(entry.obj, "__qualname__", None) == attr:
            return entry.obj, entry.name
    try:
        module = importlib.import_module(module_name)  # the plugin's own module (installed code)
    except ImportError:
        raise UntrustedReference(_unregistered(ref, origin, plugin, kind)) from None
    obj = _walk(module, ref, module_name, attr, origin)
    for entry in entries:
        if entry.obj is obj:
            return obj, entry.name
    raise UntrustedReference(_unregistered(ref, origin, plugin, kind))


def _unregistered(ref: str, origin: Origin, plugin: str, kind: str | None) -> str:
    word = _KIND_WORDS.get(kind or "", "model or data set")
    listing = f"`hkt list {kind}`" if kind else "`hkt list models`, `hkt list datasets`"
    return (f"{ref!r} (from {origin.what}) is refused: it names code of the installed plugin {plugin!r} that is not "
            f"a registered {word}; name a registered {word} instead ({listing})")


def _say_deprecated(ref: str, name: str, kind: str | None, origin: Origin) -> None:
    if ref in _deprecations_said:
        return
    _deprecations_said.add(ref)
    word = _KIND_WORDS.get(kind or "", "name")
    print(f"hkt: deprecated: {ref!r} (from {origin.what}) is the registered {word} {name!r}; write {name!r} "
          f"instead (module:callable paths into installed plugins will stop resolving)", file=sys.stderr, flush=True)


def _walk(module: types.ModuleType, ref: str, module_name: str, attr: str, origin: Origin) -> Any:
    """``module.<attr>``: every step but the last must reach a class (``Net.from_config``)."""
    obj: Any = module
    parts = attr.split(".")
    for i, part in enumerate(parts):
        if i > 0 and not isinstance(obj, type):
            raise UntrustedReference(f"{ref!r} (from {origin.what}) is refused: {'.'.join(parts[:i])!r} is a "
                                     f"{type(obj).__name__}, not a class; name a class or function defined in "
                                     f"{module_name!r}")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{ref!r}: module {module_name!r} has no attribute {attr!r}") from None
        if isinstance(obj, types.ModuleType):
            raise UntrustedReference(f"{ref!r} (from {origin.what}) is refused: {part!r} is a module; name a "
                                     f"class or function defined in {module_name!r}")
    return obj


def _check_kind(obj: Any, ref: str, kind: str | None, origin: Origin) -> None:
    """Before anything is called: a class or a function, and a model class is an ``nn.Module``."""
    is_class = isinstance(obj, type)
    is_function = isinstance(obj, types.FunctionType) or (
        isinstance(obj, types.MethodType) and isinstance(obj.__self__, type))
    if not (is_class or is_function):
        raise UntrustedReference(f"{ref!r} (from {origin.what}) is refused: it is a {type(obj).__name__}, not a "
                                 f"callable class or function")
    if kind == "models" and is_class:
        from torch import nn

        if not issubclass(obj, nn.Module):
            raise UntrustedReference(f"{ref!r} (from {origin.what}) is refused: class {obj.__name__} is not an "
                                     f"nn.Module; a model reference names an nn.Module class or a function "
                                     f"returning one")


def _import_user_module(ref: str, module_name: str, entry: str | None) -> types.ModuleType:
    """Import the user's module with the folder it was found in on ``sys.path`` for the import only,
    after the installed packages (so nothing there is shadowed)."""
    added = entry is not None and entry not in sys.path
    if added:
        sys.path.append(entry)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{ref!r}: cannot import module {module_name!r} ({exc})") from None
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def _not_found(ref: str, top: str, origin: Origin) -> str:
    if origin.received and not origin.trust_code:
        for folder in origin.folders:
            if importlib.machinery.PathFinder.find_spec(top, [str(folder)]) is not None:
                return (f"{ref!r} (from {origin.what}): module {top!r} is not importable from here; the run folder "
                        f"points to {folder}, which holds it. hkt does not import code a received run folder names: "
                        f"add that folder to PYTHONPATH, or pass --trust-code if you trust it")
    beside = f" or in {', '.join(str(f) for f in origin.search_folders())}" if origin.search_folders() else ""
    return (f"{ref!r} (from {origin.what}): cannot import module {top!r}: not found on sys.path (the current "
            f"directory included){beside}")
