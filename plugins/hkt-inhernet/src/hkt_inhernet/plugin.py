"""The ``inhernet`` plugin (entry point ``inhernet`` in group ``hkt``): registers the ``inherit``
training method and the ``hkt inhernet`` command, through the same hooks as any plugin."""

from __future__ import annotations

from hkt_core import hookimpl


@hookimpl
def hkt_register_methods(registry):
    from .method import InheritMethod

    registry.add("inherit", InheritMethod,
                 description="InherNet: the parent compressed by SVD inheritance to the child's size, fine-tuned")


@hookimpl
def hkt_register_commands(registry):
    from .cli import configure

    registry.add("inhernet", configure, description="InherNet compression reports")
