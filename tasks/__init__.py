"""Task families, the domain every role shares: problems, formats, checks, held-out suites; builtin or plug-ins
(``get_family("arithmetic")``, ``get_family("mypkg.task:MyTask")``; see ``tasks.registry``)."""

from tasks import arithmetic as _arithmetic  # noqa: F401 - registers the family
from tasks import grounded as _grounded  # noqa: F401 - registers the family
from tasks import data as _data  # noqa: F401 - registers the family
from tasks.base import Example, GroundedFamily, Passage, Problem, Relation, TaskFamily, mastered, mastered_length
from tasks.registry import FamilyError, available_families, get_family, known_families, register_family

__all__ = ["Example", "FamilyError", "GroundedFamily", "Passage", "Problem", "Relation", "TaskFamily",
           "available_families", "get_family", "known_families", "mastered", "mastered_length", "register_family"]
