"""Task families by name, and the generic registry that verifier checks use too.

A family is named in one of three ways, in this order:
- a builtin name (``arithmetic``, ``grounded``, ``jsonl``), registered with ``@register_family``;
- an entry point of an installed package in the group ``selfloop.tasks``
  (``[project.entry-points."selfloop.tasks"] mytask = "mypkg.task:MyTask"``);
- ``package.module:ClassName``, imported on first use.
The name is also what a family's samples carry (``Candidate.family``) and what every worker resolves again, so a
plug-in must be importable wherever the loop's workers run. An unknown name, a plug-in that fails to import, a
name that is not a ``TaskFamily`` subclass or options it does not take raise ``FamilyError`` with the reason.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

from tasks.base import TaskFamily

ENTRY_POINT_GROUP = "selfloop.tasks"
T = TypeVar("T")


class FamilyError(KeyError):
    """A task family that cannot be used, with the reason (a KeyError, so a worker dead-letters its messages)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Classes registered by name; a duplicate name raises, an unknown one names the known ones."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.what} {name!r} is already registered")
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return decorate

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(sorted(self._classes)) or 'none'}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._classes

    def names(self) -> list[str]:
        return sorted(self._classes)


FAMILIES: Registry[TaskFamily] = Registry("task family")


def register_family(name: str) -> Callable[[type[TaskFamily]], type[TaskFamily]]:
    return FAMILIES.register(name)


@dataclass(frozen=True)
class FamilySource:
    name: str
    source: str  # "builtin (tasks.arithmetic)", "entry point of mypkg 0.1 (mypkg.task:MyTask)"
    error: str | None = None  # why it cannot be loaded; None when it loads


def family_class(name: str) -> type[TaskFamily]:
    """The class a family name stands for (see the module docstring for the three ways)."""
    if name in FAMILIES:
        return FAMILIES.get(name)
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if found:
        entry = next(iter(found))
        return _family_class(name, entry.value, entry.load)
    if ":" in name:
        return _family_class(name, name, lambda: import_object(name))
    plugins = sorted(e.name for e in entry_points(group=ENTRY_POINT_GROUP))
    raise FamilyError(f"unknown task family {name!r}; known: {', '.join(FAMILIES.names() + plugins)} "
                      "(or name one as package.module:ClassName)")


def get_family(name: str, **options: object) -> TaskFamily:
    """An instance of the family ``name`` with ``options``; its ``name`` is the name it was asked by."""
    cls = family_class(name)
    try:
        family = cls(**options)
    except Exception as exc:  # noqa: BLE001 - whatever a plug-in's constructor raises is why it cannot be used
        raise FamilyError(f"task family {name!r} cannot be built with the options {sorted(options)}: {exc}") from exc
    family.name = name
    return family


def policy_family_options(path: str | Path) -> dict[str, dict]:
    """``{family: options}`` from a loop policy file (the JSON ``loopctl up`` writes): what every worker needs to
    build the policy's family as the controller does; empty where there is no such file."""
    if not Path(path).exists():
        return {}
    policy = json.loads(Path(path).read_text())
    return {policy.get("family", "arithmetic"): dict(policy.get("family_options") or {})}


def known_families() -> list[str]:
    return FAMILIES.names()


def available_families() -> list[FamilySource]:
    """Every family the loop can run here: the builtin ones and the installed plug-ins, each loaded to say whether it
    works."""
    found = [FamilySource(name, f"builtin ({FAMILIES.get(name).__module__})") for name in FAMILIES.names()]
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = f"{entry.dist.name} {entry.dist.version}" if entry.dist else "an installed package"
        try:
            family_class(entry.name)
            error = None
        except FamilyError as exc:
            error = str(exc)
        found.append(FamilySource(entry.name, f"entry point of {dist} ({entry.value})", error))
    return found


def import_object(spec: str) -> object:
    """The object ``package.module:attribute`` names (the attribute may be dotted)."""
    module_name, _, attribute = spec.partition(":")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def _family_class(name: str, spec: str, load: Callable[[], object]) -> type[TaskFamily]:
    try:
        loaded = load()
    except Exception as exc:  # noqa: BLE001 - any failure of a plug-in's import is reported with its reason
        raise FamilyError(f"task family {name!r}: cannot load {spec}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(loaded, type) and issubclass(loaded, TaskFamily)):
        raise FamilyError(f"task family {name!r}: {spec} is {loaded!r}, not a TaskFamily subclass")
    return loaded
