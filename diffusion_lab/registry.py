"""A registry of classes that checkpoints may rebuild by name.

Checkpoints store a class *name* and its constructor arguments as JSON; loading
looks the name up here and calls the constructor. Nothing is ever imported or
executed from a file. Your own network registers itself on import::

    @dl.register
    class MyNet(torch.nn.Module):
        def __init__(self, width: int = 64): ...
"""

from __future__ import annotations

REGISTRY: dict[str, type] = {}

__all__ = ["REGISTRY", "register", "lookup"]


def register(cls=None, *, name: str | None = None):
    """Class decorator: make ``cls`` loadable from checkpoints under ``name`` (default: its name).

    Registering a *different* class under a name already taken is an error.
    """

    def wrap(c):
        key = name or c.__name__
        old = REGISTRY.get(key)
        if old is not None and old is not c and (old.__module__, old.__qualname__) != (
            c.__module__, c.__qualname__
        ):
            raise ValueError(f"a class named {key!r} is already registered ({old.__module__})")
        REGISTRY[key] = c
        return c

    return wrap(cls) if cls is not None else wrap


def lookup(name: str) -> type:
    """The registered class called ``name``; the error lists what is known."""
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY)) or "(none)"
        raise KeyError(
            f"class {name!r} is not registered; known: {known}. "
            "Import the module that defines it (it must use @diffusion_lab.register)."
        )
    return REGISTRY[name]
