"""The hook implementation marker plugins decorate their hooks with."""

import pluggy

from .hookspecs import PROJECT

hookimpl = pluggy.HookimplMarker(PROJECT)
