"""Grounded QA: questions about a corpus, answered closed-book, accepted only when the corpus supports the answer.

The builtin corpus is a synthetic world generated from a seed (``tasks.world``): a few hundred people,
their home town, job, favourite colour, pet and age, written as one passage each. Questions come from templates
(``where does Kavo live``; ``tasks.grounded_questions``); a real LLM can write them instead from
``question_prompt(passage)``, and ``problem_from_question`` turns what it wrote back into a problem. The model
answers without the corpus; the verifier's evidence check retrieves passages and accepts only an answer they
support.

Some questions have no answer in the corpus: the attribute is missing from the person's passage, or the person
is not in the world at all (training asks about a new name each time; the held-out suite about the world's own
strangers, which training never names). Their accepted answer is ``UNKNOWN`` ("I do not know": the builtin
model's characters have no apostrophe; "I don't know" and "I dont know" are read as the same answer).

Every question is also asked with its answer begun by its subject (``renderings``): a model that abstains on
what it has only read then says what it read, and the evidence check keeps it where the corpus states it.

Difficulty is a tier of the world: the people are split into ``tiers`` groups, and tier ``d`` asks about group
``d`` only (with its own share of unanswerable questions). The base model is taught the QA format on the first
``easy_tiers`` (``replay_examples``); the loop teaches itself the rest from what the evidence check accepts.

The held-out suite of a tier asks about facts that training never asks about (a fixed share of each tier's
facts, and a fixed set of strangers), in phrasings training never uses; it has answerable and unanswerable
questions (``data["answerable"]``): a score splits into answerable accuracy and hallucination on unanswerable
ones.

Prompts and answers use only letters, digits, spaces and ``.``: ``Q: where does Kavo live. A:`` then
`` Kavo lives in Tesa.``: the answer states the fact as the corpus does, so answering is recalling a sentence the
model has read (a bare value is also read back, for a real LLM that answers ``Tesa.``), or `` I do not know.``.

One module, because the family's problems, its answer format and its held-out measurement are one contract: an
answer is read back by the same rules the format writes it with, and the suites are drawn from the same tiers.
"""

from __future__ import annotations

import functools
import random
import re

from tasks.base import Example, GroundedFamily, Problem
from tasks.grounded_questions import (
    HELDOUT_TEMPLATES,
    QUESTION_PROMPT,
    TRAIN_TEMPLATES,
    match_template,
    subject_of,
)
from tasks.registry import register_family
from tasks.world import RELATIONS, NameSpacing, Passage, World, build_world, sentence

UNKNOWN = "I do not know"
_UNKNOWN_FORMS = {"i do not know", "i don't know", "i dont know", "idk", "unknown", "i do not know that"}


@register_family("grounded")
class GroundedQA(GroundedFamily):
    unknown_answer = UNKNOWN

    def __init__(
        self,
        *,
        seed: int = 7,
        entities: int = 240,
        tiers: int = 3,
        easy_tiers: int = 1,
        unanswerable_share: float = 0.25,
        missing_share: float = 0.5,
        eval_share: float = 0.2,
        eval_size: int = 60,
        name_distance: int = 3,
        fresh_strangers: bool = True,
        guesses: bool = True,
    ) -> None:
        """``missing_share``: the share of training's unanswerable questions that ask about an attribute a known
        person lacks (the rest ask about strangers); ``eval_share``: the share of each tier's facts held out for
        evaluation (never asked in training);
        ``eval_size``: answerable held-out questions per tier (plus a third as many unanswerable ones);
        ``name_distance``: the fewest edits between any two names of the world, strangers included;
        ``fresh_strangers``: training asks about a new name for every question about a stranger (drawn like the
        world's names, as far from every one of them), instead of the world's training strangers, so that what
        is learnt is "a name I never read" rather than a list of names;
        ``guesses``: ask every question a second way, with the answer begun by its subject (``renderings``)."""
        if not 1 <= easy_tiers <= tiers or tiers > entities:
            raise ValueError("need 1 <= easy_tiers <= tiers <= entities")
        if not 0.0 <= unanswerable_share < 1.0 or not 0.0 < eval_share < 1.0 or not 0.0 <= missing_share <= 1.0:
            raise ValueError("unanswerable_share must be in [0, 1), eval_share in (0, 1) and missing_share in [0, 1]")
        self.seed = seed
        self.tiers = tiers
        self.easy_tiers = easy_tiers
        self.unanswerable_share = unanswerable_share
        self.missing_share = missing_share
        self.eval_share = eval_share
        self.eval_size = eval_size
        self.name_distance = name_distance
        self.fresh_strangers = fresh_strangers
        self.guesses = guesses
        self.world: World = build_world(seed=seed, entities=entities, strangers=entities, name_distance=name_distance)

    # -- the corpus ---------------------------------------------------------------------------------------------
    def corpus(self) -> list[Passage]:
        """The reference passages the evidence check retrieves from."""
        return list(self.world.passages)

    @property
    def difficulties(self) -> range:
        return range(1, self.tiers + 1)

    def kind(self, problem: Problem) -> str | None:
        """What a question asks about: "known" (a fact the corpus states), "missing" (an attribute its person
        lacks) or "stranger" (a name the corpus never mentions); None for a question written freely."""
        entity, relation = problem.data.get("entity"), problem.data.get("relation")
        if not entity or relation not in RELATIONS:
            return None
        if entity not in self.world.people:
            return "stranger"
        return "known" if self.world.fact(entity, relation) is not None else "missing"

    def subject(self, problem: Problem) -> str | None:
        """The person a question is about: what a passage must mention to answer it."""
        return problem.data.get("entity") or subject_of(problem.canonical)

    def recitation_prompt(self, problem: Problem) -> str | None:
        """The question's subject: prompted with a name alone, the model recites what it read about the person
        (every passage, and every reading of one, begins with the name); None for a question without a subject."""
        return self.subject(problem)

    @property
    def recitation_budget(self) -> int:
        """Room for the longest passage of the corpus, and a margin."""
        return self._longest_passage + 16

    def recitation_agrees(self, problem: Problem, answer: str, recitation: str) -> bool:
        """Whether a recitation about the question's subject states its attribute with ``answer`` as the value.
        A question written freely (no known attribute) cannot be checked: its answer stands."""
        entity, relation = self.subject(problem), problem.data.get("relation")
        if relation not in RELATIONS:
            return True
        stated = {s[1]: s[2] for s in map(statement, f"{entity}{recitation}".split(".")) if s and s[0] == entity}
        return stated.get(relation) == answer

    # -- facts by tier ------------------------------------------------------------------------------------------
    def _tier_of(self, index: int, total: int) -> int:
        return index * self.tiers // total + 1

    @functools.cached_property
    def _facts(self) -> dict[int, dict[str, list[tuple[str, str]]]]:
        """tier -> {"known" | "missing" | "stranger": [(entity, relation)]}, in a fixed order."""
        facts: dict[int, dict[str, list[tuple[str, str]]]] = {
            t: {"known": [], "missing": [], "stranger": []} for t in self.difficulties
        }
        names, strangers = self.world.names, self.world.strangers
        for i, name in enumerate(names):
            for relation in RELATIONS:
                kind = "known" if relation in self.world.people[name] else "missing"
                facts[self._tier_of(i, len(names))][kind].append((name, relation))
        for i, name in enumerate(strangers):
            for relation in RELATIONS:
                facts[self._tier_of(i, len(strangers))]["stranger"].append((name, relation))
        return facts

    @functools.cached_property
    def _held_out(self) -> frozenset[tuple[str, str]]:
        """The facts (and strangers, all their relations) that only the evaluation suite asks about."""
        rng = random.Random(self.seed * 7919 + 1)
        held: set[tuple[str, str]] = set()
        for tier in self.difficulties:
            for kind in ("known", "missing"):
                pool = self._facts[tier][kind]
                held.update(rng.sample(pool, round(len(pool) * self.eval_share)))
            names = sorted({name for name, _ in self._facts[tier]["stranger"]})
            for name in rng.sample(names, round(len(names) * self.eval_share)):
                held.update((name, relation) for relation in RELATIONS)
        return frozenset(held)

    def facts(self, tier: int, kind: str, *, held_out: bool) -> list[tuple[str, str]]:
        """(entity, relation) pairs of a tier: ``kind`` is "known" (the corpus states it), "missing" (a person
        without that attribute) or "stranger" (a name the corpus never mentions); ``held_out``: the ones only the
        evaluation suite asks about, or the ones training may ask about."""
        self._check_difficulty(tier)
        return [f for f in self._facts[tier][kind] if (f in self._held_out) == held_out]

    def ask(self, entity: str, relation: str, tier: int, *, held_out_phrasing: bool, rng: random.Random) -> Problem:
        """A question about one fact in a random phrasing of the held-out or the training kind (for measuring)."""
        templates = HELDOUT_TEMPLATES if held_out_phrasing else TRAIN_TEMPLATES
        return self._problem(entity, relation, rng.choice(templates[relation]), tier,
                             "heldout" if held_out_phrasing else "train")

    def _problem(self, entity: str, relation: str, template: str, difficulty: int, phrasing: str) -> Problem:
        answer = self.world.fact(entity, relation)
        question = template.format(e=entity)
        data = {"entity": entity, "relation": relation, "answerable": answer is not None,
                "answer": answer if answer is not None else UNKNOWN, "phrasing": phrasing}
        return Problem("grounded", difficulty, question, data)

    def _check_difficulty(self, difficulty: int) -> None:
        if difficulty not in self.difficulties:
            raise ValueError(f"grounded difficulty is a tier in 1..{self.tiers}, got {difficulty}")

    # -- problems -------------------------------------------------------------------------------------------------
    def make_problems(self, difficulty: int, count: int, rng: random.Random) -> list[Problem]:
        """Training questions about tier ``difficulty`` (training phrasings, held-out facts excluded), with about
        ``unanswerable_share`` of them unanswerable: about a missing attribute (``missing_share`` of them) or a
        stranger."""
        self._check_difficulty(difficulty)
        pools = {kind: [f for f in facts if f not in self._held_out]
                 for kind, facts in self._facts[difficulty].items()}
        capacity = sum(len(TRAIN_TEMPLATES[r]) for pool in pools.values() for _, r in pool)
        problems: dict[str, Problem] = {}
        count = min(count, capacity)
        while len(problems) < count:
            if rng.random() >= self.unanswerable_share or not (pools["missing"] or pools["stranger"]):
                kind = "known"
            else:
                kind = ("missing" if pools["missing"] and (rng.random() < self.missing_share or not pools["stranger"])
                        else "stranger")
            if not pools[kind]:
                kind = next(k for k in ("known", "missing", "stranger") if pools[k])
            if kind == "stranger" and self.fresh_strangers:
                entity, relation = self._fresh_stranger(rng), rng.choice(list(RELATIONS))
            else:
                entity, relation = rng.choice(pools[kind])
            problem = self._problem(entity, relation, rng.choice(TRAIN_TEMPLATES[relation]), difficulty, "train")
            problems.setdefault(problem.sample_id, problem)
        return list(problems.values())

    def _fresh_stranger(self, rng: random.Random) -> str:
        """A name the world does not hold, at least ``name_distance`` edits from each of its people, towns and
        strangers (the held-out ones included)."""
        return self._world_spacing.draw(rng)

    @functools.cached_property
    def _world_spacing(self) -> NameSpacing:
        return NameSpacing((*self.world.names, *self.world.towns, *self.world.strangers), self.name_distance)

    @functools.cache
    def eval_suite(self, difficulty: int) -> list[Problem]:
        self._check_difficulty(difficulty)
        rng = random.Random(self.seed * 1000 + difficulty)
        facts = self._facts[difficulty]
        known = [f for f in facts["known"] if f in self._held_out]
        unknown = [f for f in facts["missing"] + facts["stranger"] if f in self._held_out]
        chosen = rng.sample(known, min(self.eval_size, len(known)))
        chosen += rng.sample(unknown, min(max(1, self.eval_size // 3), len(unknown)))
        return [self._problem(e, r, rng.choice(HELDOUT_TEMPLATES[r]), difficulty, "heldout") for e, r in chosen]

    def problem_from_question(self, question: str, difficulty: int = 1) -> Problem:
        """A problem from a question a model wrote: matched against the templates where it fits one, else kept as
        written with its capitalized word as the subject (the evidence check decides what the corpus says)."""
        question = " ".join(question.strip().rstrip("?.").split())
        match = match_template(question)
        if match:
            entity, relation, form, phrasing = match
            return self._problem(entity, relation, form, difficulty, phrasing)
        return Problem("grounded", difficulty, question, _written(question))

    def parse_problem(self, canonical: str, difficulty: int, data: dict | None = None) -> Problem:
        """The problem a candidate names. Its facts come from the world, not from the message, wherever the
        question fits a template; the canonical text is kept as it is (it is what the sample id hashes)."""
        match = match_template(canonical)
        if match:
            entity, relation, form, phrasing = match
            return Problem("grounded", difficulty, canonical, self._problem(entity, relation, form, difficulty,
                                                                            phrasing).data)
        return Problem("grounded", difficulty, canonical, dict(data) if data else _written(canonical))

    def answer_budget(self, problem: Problem) -> int:
        """Room for the longest statement: the subject, the longest relation sentence and value, and a margin."""
        return len(problem.data.get("entity") or "") + _LONGEST_STATEMENT + 6

    @functools.cached_property
    def _longest_passage(self) -> int:
        return max(len(p.text) for p in self.world.passages)

    @staticmethod
    def question_prompt(passage: Passage | str) -> str:
        """What a real LLM is asked to write a question from a passage (the builtin path uses the templates)."""
        return QUESTION_PROMPT.format(passage=passage.text if isinstance(passage, Passage) else passage)

    def stated_value(self, sentence: str) -> str | None:
        """The value a sentence written like the corpus's facts states (``Kavo lives in Tesa.`` -> ``Tesa``), or
        None: what the evidence check compares an answer with."""
        stated = statement(sentence)
        return stated[2] if stated else None

    def sentence_answers(self, problem: Problem, sentence: str) -> bool | None:
        """Whether a corpus sentence states the fact a question asks for (its person and attribute); None where
        the question's attribute is not known (a question written freely) or the sentence is not written like
        the corpus's facts: then the evidence check judges relevance by embeddings."""
        relation, entity = problem.data.get("relation"), problem.data.get("entity")
        stated = statement(sentence)
        if not relation or not entity or stated is None:
            return None
        return stated[:2] == (entity, relation)

    # -- the model-facing format ----------------------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        return f"Q: {problem.canonical}. A:"

    def renderings(self, problem: Problem) -> list[str]:
        """The question as asked, then (with ``guesses``) the same question with the answer begun by its subject
        (``Q: where does Kavo live. A: Kavo``). A model taught to abstain on a name it was never asked about
        abstains on everyone it has only read about; begun this way, the answer can only go on with what the
        model read, and the evidence check keeps it only where the corpus states it. What is kept trains on the
        plain prompt (``training_example``), so the model learns to answer such questions unprompted."""
        prompt = self.prompt(problem)
        if not self.guesses:
            return [prompt]
        subject = self.subject(problem)
        return [prompt, f"{prompt} {subject}" if subject else prompt]

    def read_answer(self, problem: Problem, completion: str) -> str | None:
        """The value an answer states. Answers are written as the corpus writes facts (``Kavo lives in Tesa.``);
        a statement about another person or another relation answers nothing (None); a statement without its
        subject (``lives in Tesa.``: the rest of an answer begun for the model, see ``renderings``) is about the
        question's subject; a bare value (``Tesa.``, as a real LLM may answer) is read as it is."""
        answer = " ".join(completion.strip().split(".", 1)[0].split())
        if not answer:
            return None
        if answer.lower() in _UNKNOWN_FORMS:
            return UNKNOWN
        stated = statement(answer)
        subject = self.subject(problem)
        if stated is None and subject:
            stated = statement(f"{subject} {answer}")
        if stated is None:
            return answer
        entity, relation, value = stated
        if entity != problem.data.get("entity") or relation != problem.data.get("relation"):
            return None
        return value

    def write_answer(self, problem: Problem, answer: str) -> str:
        """The fact stated in the corpus's own words (the model recites what it read), or the abstention."""
        entity, relation = problem.data.get("entity"), problem.data.get("relation")
        if answer == UNKNOWN or not entity or relation not in RELATIONS:
            return f" {answer}."
        return " " + sentence(entity, relation, answer)

    def true_answer(self, problem: Problem) -> str | None:
        return problem.data.get("answer")

    def plausible(self, problem: Problem, answer: str) -> tuple[bool, str]:
        if answer == UNKNOWN:
            return True, "an abstention"
        relation = problem.data.get("relation")
        if len(answer) > 20 or not re.fullmatch(r"[A-Za-z0-9 ]+", answer):
            return False, f"answer {answer!r} is not a short word or number"
        if relation == "age" and not (answer.isdigit() and len(answer) <= 3):
            return False, f"an age is a number, not {answer!r}"
        if relation == "home" and not re.fullmatch(r"[A-Z][a-z]+", answer):
            return False, f"a town is one capitalized word, not {answer!r}"
        if relation in ("job", "color", "pet") and not re.fullmatch(r"[a-z]+", answer):
            return False, f"a {relation} is one lowercase word, not {answer!r}"
        return True, f"a well-formed {relation or 'answer'}"

    # -- training data --------------------------------------------------------------------------------------------
    def replay_examples(self, rng: random.Random, count: int) -> list[Example]:
        """Labelled questions of the easy tiers (training phrasings, held-out facts excluded), unanswerable ones
        answered ``UNKNOWN``: the QA format the base model is taught before the loop starts."""
        examples: list[Example] = []
        while len(examples) < count:
            tier = rng.randint(1, self.easy_tiers)
            for problem in self.make_problems(tier, min(count - len(examples), 64), rng):
                answer = self.true_answer(problem)
                assert answer is not None  # a drawn problem carries its answer (UNKNOWN when unanswerable)
                examples.append(Example(self.prompt(problem), self.write_answer(problem, answer)))
        return examples[:count]

    def corpus_text(self) -> list[str]:
        """The passages as plain text, for teaching a model the world before it answers closed-book."""
        return [p.text for p in self.world.passages]


_STATEMENTS = [
    (relation, re.compile("^" + re.escape(form.rstrip(".")).replace(re.escape("{e}"), r"(?P<e>[A-Z][a-z]+)")
                          .replace(re.escape("{v}"), r"(?P<v>[A-Za-z0-9]+)") + "$"))
    for relation, form in RELATIONS.items()
]
_LONGEST_STATEMENT = max(len(form) for form in RELATIONS.values()) + 20  # values are at most 20 characters


def statement(text: str) -> tuple[str, str, str] | None:
    """(entity, relation, value) of a sentence written like the corpus's facts (spacing and a final ``.`` aside),
    else None."""
    text = " ".join(text.strip().rstrip(".").split())
    for relation, pattern in _STATEMENTS:
        match = pattern.match(text)
        if match:
            return match.group("e"), relation, match.group("v")
    return None


def _written(question: str) -> dict:
    return {"entity": subject_of(question), "relation": None, "answerable": None, "answer": None,
            "phrasing": "written"}
