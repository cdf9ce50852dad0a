"""Name -> method table, filled when the method modules are imported.

A plain table: the core imports no family. ``whybox`` imports ``whybox.methods`` on start-up,
whose modules register themselves with :func:`register`; ``whybox.explain``, the CLI and the
web app look methods up here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .validation import fail

__all__ = ["register", "get_method", "available_methods"]

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator registering a native method under ``name``."""

    def decorate(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a method named {name!r} is already registered")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorate


def get_method(name: str) -> type:
    """The method class registered under ``name``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        fail("get_method", "method", f"one of {sorted(_REGISTRY)}", name)
        raise AssertionError from None  # unreachable: fail raises


def available_methods() -> list[str]:
    """Names of every registered method, sorted."""
    return sorted(_REGISTRY)
