"""Task families registered by name; an unknown name fails with the list of known ones."""

from __future__ import annotations

from collections.abc import Callable

from loop.families.base import TaskFamily

_FAMILIES: dict[str, Callable[..., TaskFamily]] = {}


def register_family(name: str) -> Callable[[type[TaskFamily]], type[TaskFamily]]:
    def decorate(cls: type[TaskFamily]) -> type[TaskFamily]:
        if name in _FAMILIES:
            raise ValueError(f"task family {name!r} is already registered")
        cls.name = name
        _FAMILIES[name] = cls
        return cls

    return decorate


def get_family(name: str, **options: object) -> TaskFamily:
    try:
        factory = _FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown task family {name!r}; known: {', '.join(sorted(_FAMILIES)) or 'none'}") from None
    return factory(**options)


def known_families() -> list[str]:
    return sorted(_FAMILIES)
