"""Task families: plug-ins registered by name (``get_family("arithmetic")``)."""

from loop.families import arithmetic as _arithmetic  # noqa: F401 - registers the family
from loop.families import grounded as _grounded  # noqa: F401 - registers the family
from loop.families.base import Problem, TaskFamily
from loop.families.registry import get_family, known_families, register_family

__all__ = ["Problem", "TaskFamily", "get_family", "known_families", "register_family"]
