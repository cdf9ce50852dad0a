"""Name -> method registry, used by the native ``explain`` helper, the CLI and the web app."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

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
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"The 'method' parameter of get_method must be one of {sorted(_REGISTRY)}. "
            f"Got {name!r}."
        ) from None


def available_methods() -> list[str]:
    _load_builtin_methods()
    return sorted(_REGISTRY)


def _load_builtin_methods() -> None:
    # Importing the methods package registers every built-in method.
    import whybox.methods  # noqa: F401
