"""Task families by name: builtin, by entry point of an installed package, or as package.module:ClassName; every
failure names its reason."""

from __future__ import annotations

import importlib
import sys

import pytest

from tasks import FamilyError, TaskFamily, available_families, get_family
from tasks.registry import Registry

EXAMPLE = "word_tasks:ReverseWords"


@pytest.fixture
def example_on_path(monkeypatch, request):
    monkeypatch.syspath_prepend(str(request.config.rootpath / "examples" / "word_tasks"))
    yield
    sys.modules.pop("word_tasks", None)


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch, example_on_path):
    """An installed distribution with two entry points in the group, one of them broken: what pip leaves behind."""
    dist = tmp_path / "selfloop_word_tasks-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: selfloop-word-tasks\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[selfloop.tasks]\nreverse-words = word_tasks:ReverseWords\n"
                                           "broken = no_such_module_here:Family\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(FamilyError, match=r"unknown task family 'vibes'; known: arithmetic, grounded, jsonl"):
        get_family("vibes")


def test_a_family_named_by_module_and_class_carries_that_name(example_on_path):
    family = get_family(EXAMPLE, eval_size=5)
    assert isinstance(family, TaskFamily) and family.name == EXAMPLE
    assert {p.family for p in family.eval_suite(2)} == {EXAMPLE} and len(family.eval_suite(2)) == 5


def test_a_plugin_that_fails_to_import_or_is_not_a_family_says_why(example_on_path):
    with pytest.raises(FamilyError, match=r"cannot load no_such_pkg.mod:Task: ModuleNotFoundError"):
        get_family("no_such_pkg.mod:Task")
    with pytest.raises(FamilyError, match=r"word_tasks:LETTERS is 'abc.*', not a TaskFamily subclass"):
        get_family("word_tasks:LETTERS")
    with pytest.raises(FamilyError, match=r"cannot be built with the options \['colour'\]"):
        get_family(EXAMPLE, colour="blue")


def test_installed_entry_points_are_found_and_listed_with_their_source(installed_plugin):
    assert get_family("reverse-words").name == "reverse-words"
    listed = {f.name: f for f in available_families()}
    assert listed["arithmetic"].source == "builtin (tasks.arithmetic)" and listed["arithmetic"].error is None
    assert listed["reverse-words"].source == "entry point of selfloop-word-tasks 0.1.0 (word_tasks:ReverseWords)"
    assert listed["reverse-words"].error is None
    assert "ModuleNotFoundError" in listed["broken"].error
    with pytest.raises(FamilyError, match="task family 'broken': cannot load no_such_module_here:Family"):
        get_family("broken")


def test_a_registry_refuses_a_duplicate_name():
    registry: Registry[object] = Registry("thing")
    registry.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        registry.register("a")(type("B", (), {}))
    with pytest.raises(KeyError, match="unknown thing 'b'; known: a"):
        registry.get("b")
