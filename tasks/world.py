"""A synthetic world generated from a seed: a few hundred people, their attributes, and passages about them.

It is the builtin reference corpus of the grounded QA family. Everything is short and in the builtin model's
character set (letters, digits, ``.``, ``,`` and spaces): names are two or three syllables, values are single
words or numbers. Some attributes are deliberately missing, so the corpus also defines what it does *not*
know: a question about a missing attribute, or about a name that is not in the world, has no answer in it.

    world = build_world(seed=7, entities=240)
    world.passages[0]   # Passage(id="p0000", entity="Kavo", text="Kavo lives in Tesa. Kavo works as a cook. ...")
    world.fact("Kavo", "home")   # "Tesa", or None where the corpus says nothing
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from dataclasses import dataclass

from tasks.base import Passage

# One relation per attribute: the sentence that states it in a passage, and its values.
RELATIONS: dict[str, str] = {
    "home": "{e} lives in {v}.",
    "job": "{e} works as a {v}.",
    "color": "{e} likes the color {v}.",
    "pet": "{e} has a pet {v}.",
    "age": "{e} is {v} years old.",
}
JOBS = ("baker", "smith", "nurse", "pilot", "farmer", "tailor", "miner", "judge", "cook", "guard", "poet", "clerk",
        "potter", "sailor", "singer", "weaver")
COLORS = ("red", "blue", "green", "black", "white", "pink", "gray", "gold", "brown", "orange")
PETS = ("cat", "dog", "owl", "fox", "goat", "horse", "crow", "frog", "hare", "duck")
AGES = tuple(str(age) for age in range(18, 91))

_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_CODAS = ("", "", "", "n", "r", "l", "s")


@dataclass(frozen=True)
class World:
    seed: int
    people: dict[str, dict[str, str]]  # name -> {relation: value}; a relation absent from the dict is unknown
    towns: tuple[str, ...]
    strangers: tuple[str, ...]  # names of the same shape that are *not* in the world
    passages: tuple[Passage, ...]

    def fact(self, entity: str, relation: str) -> str | None:
        return self.people.get(entity, {}).get(relation)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(self.people)

    @functools.cached_property
    def passage_of(self) -> dict[str, Passage]:
        return {p.entity: p for p in self.passages}


def _name(rng: random.Random, syllables: int) -> str:
    text = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
    return text.capitalize()


class NameSpacing:
    """Names kept at least ``distance`` edits apart: which a new name may join, and new names drawn to join it.

    Names within ``distance - 1`` edits of each other share a string left after deleting at most ``distance - 1``
    characters from each, so a name is only measured against the names that share one of its deletions with it."""

    def __init__(self, names: Iterable[str] = (), distance: int = 1) -> None:
        self.distance = distance
        self.names: set[str] = set()
        self._by_deletion: dict[str, set[str]] = {}
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        self.names.add(name)
        if self.distance > 1:
            for variant in _deletions(name, self.distance - 1):
                self._by_deletion.setdefault(variant, set()).add(name)

    def admits(self, name: str) -> bool:
        if name in self.names:
            return False
        if self.distance <= 1:
            return True
        near = set().union(*(self._by_deletion.get(v, ()) for v in _deletions(name, self.distance - 1)))
        return all(_edits(name, other) >= self.distance for other in near)

    def draw(self, rng: random.Random) -> str:
        """A new name of the world's shape that may join (it does not join: ``add`` it to keep it)."""
        while True:
            name = _name(rng, rng.choice((2, 2, 3)))
            if self.admits(name):
                return name

    def draw_many(self, rng: random.Random, count: int) -> list[str]:
        """``count`` new names, each joining as it is drawn."""
        names = []
        for _ in range(count):
            names.append(self.draw(rng))
            self.add(names[-1])
        return names


def _deletions(name: str, depth: int) -> set[str]:
    """``name`` with up to ``depth`` of its characters deleted, itself included."""
    found, frontier = {name}, {name}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


def _edits(a: str, b: str) -> int:
    """Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[:], i
        for j, cb in enumerate(b, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
    return row[-1]


def sentence(entity: str, relation: str, value: str) -> str:
    return RELATIONS[relation].format(e=entity, v=value)


@functools.cache
def build_world(seed: int = 7, entities: int = 240, towns: int = 24, strangers: int = 240,
                known_share: float = 0.8, name_distance: int = 1) -> World:
    """``entities`` people, each with every attribute known with probability ``known_share`` (at least two
    known), living in ``towns`` towns; ``strangers`` more names that the corpus never mentions. With
    ``name_distance`` above 1, every two names of people and strangers are at least that many edits apart, and as
    far from every town, so that no name is a typo of another."""
    if entities < 1 or strangers < 0 or not 0.0 < known_share <= 1.0:
        raise ValueError("a world needs at least one entity and a known_share in (0, 1]")
    rng = random.Random(seed)
    town_spacing = NameSpacing()
    town_names = tuple(town_spacing.draw_many(rng, towns))
    values = {"home": town_names, "job": JOBS, "color": COLORS, "pet": PETS, "age": AGES}
    people: dict[str, dict[str, str]] = {}
    spacing = NameSpacing(town_names, name_distance) if name_distance > 1 else town_spacing
    for name in spacing.draw_many(rng, entities):
        known = [r for r in RELATIONS if rng.random() < known_share]
        while len(known) < 2:
            extra = rng.choice([r for r in RELATIONS if r not in known])
            known.append(extra)
        people[name] = {r: rng.choice(values[r]) for r in RELATIONS if r in known}
    stranger_names = tuple(spacing.draw_many(rng, strangers))
    passages = tuple(
        Passage(f"p{i:04d}", name, " ".join(sentence(name, r, v) for r, v in facts.items()))
        for i, (name, facts) in enumerate(people.items())
    )
    return World(seed, people, town_names, stranger_names, passages)
