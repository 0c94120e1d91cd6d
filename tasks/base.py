"""What a task family supplies: problems by difficulty, the model-facing format, the true answer
(for measurement), and a held-out evaluation suite that training never sees."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.messages import EvalScore, sample_id_for


@dataclass(frozen=True)
class Example:
    """One training example: the prompt and the completion to learn."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Problem:
    family: str
    difficulty: int
    canonical: str  # the text two equal problems share; the sample id is its hash
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_id(self) -> str:
        return sample_id_for(self.family, self.canonical)


@dataclass(frozen=True)
class Passage:
    """One passage of a grounded family's corpus: a stable id, the entity it is about, and its text."""

    id: str
    entity: str
    text: str


@dataclass(frozen=True)
class Relation:
    """A metamorphic relation: related problems the model is asked too, and how their answers must relate to the
    candidate's label if the label is right. Self-consistency asks the same question again, so a confident
    systematic error passes it; related problems put the digits where the error comes from elsewhere (or into a
    range the model has mastered), so the model's own answers there contradict a wrong label (docs/verification.md)."""

    name: str  # the relation's kind; the verifier runs one check per kind (``TaskFamily.relation_names``)
    problems: tuple[Problem, ...]
    agrees: Callable[[str, tuple[str, ...]], bool] = field(compare=False)  # label, one answer per problem
    implied: Callable[[str], str] = field(compare=False)  # what the label implies there, for the check's reason
    description: str = ""  # how the related problems were made ("the low 5 digits and the top digit")


class TaskFamily(ABC):
    """What every family supplies. The verifier chain it needs is ``verifier``: ``"label_free"`` (format,
    self-consistency, one metamorphic check per relation, novelty and decontamination by hashes) or, for a
    ``GroundedFamily``, ``"retrieval"`` (novelty, decontamination and evidence through the FAISS memory)."""

    name: str
    verifier: str = "label_free"
    unknown_answer: str | None = None  # the answer that abstains ("I do not know"); None where a family has none
    relation_names: tuple[str, ...] = ()  # the kinds of ``relations`` this family declares, one check each
    answer_checks: tuple[str, ...] = ()  # further registered checks its chain runs ("checker": ``check_answer``)
    chat: bool = False  # prompts are a user's message: a model with a chat template gets it applied around them
    stop_strings: tuple[str, ...] = ()  # generation ends at any of these as well as at the end-of-sequence token

    @property
    def difficulties(self) -> range:
        """The difficulties the family has (its evaluation suites and the FAISS index of them cover these)."""
        return range(1, 9)

    @abstractmethod
    def make_problems(self, difficulty: int, count: int, rng: random.Random) -> list[Problem]:
        """Fresh problems of one difficulty, excluding the evaluation suite's."""

    @abstractmethod
    def prompt(self, problem: Problem) -> str:
        """The text the model continues."""

    def renderings(self, problem: Problem) -> list[str]:
        """The problem written in every way the model is asked it, the canonical prompt first. The k answers are
        shared among them, and the self-consistency vote then needs the renderings to agree as well as the samples:
        a model's systematic error depends on how the problem is written, so it rarely survives a second writing."""
        return [self.prompt(problem)]

    def relations(self, problem: Problem) -> list[Relation]:
        """The related problems the model is also asked for ``problem``: a pure function of the problem (the generator
        asks them, the verifier rebuilds them to judge the answers), at most one of each kind in ``relation_names``."""
        return []

    def load_report(self) -> list[str]:
        """What loading the family left out, with the reason (a data file's broken records, by line)."""
        return []

    def check_answer(self, problem: Problem, answer: str) -> tuple[bool, float, str]:
        """A family's own judgement of a label (a user's checker function): passed, score, reason."""
        return True, 1.0, "no checker"

    @abstractmethod
    def read_answer(self, problem: Problem, completion: str) -> str | None:
        """The canonical answer in a completion, or None when it is malformed."""

    def read_label(self, problem: Problem, completion: str) -> str | None:
        """The answer the verifier reads from a completion to label a problem; ``read_answer`` unless the family's
        format says where an answer ends, and the model may have written on past it. The held-out evaluation always
        reads with ``read_answer``."""
        return self.read_answer(problem, completion)

    @abstractmethod
    def write_answer(self, problem: Problem, answer: str) -> str:
        """The completion the model should learn to produce for a canonical answer."""

    @abstractmethod
    def true_answer(self, problem: Problem) -> str | None:
        """The right answer, for measurement only (None where the family cannot know it)."""

    @abstractmethod
    def plausible(self, problem: Problem, answer: str) -> tuple[bool, str]:
        """The length and format filter: could this be an answer to this problem at all?"""

    @abstractmethod
    def eval_suite(self, difficulty: int) -> list[Problem]:
        """The held-out problems of one difficulty: fixed seed, never trained on."""

    def recitation_prompt(self, problem: Problem) -> str | None:
        """What the model is prompted with to recite what it has read that bears on a problem, before its answer
        is trusted (``workers.evaluator.recitation_checked``); None where the family has nothing to recite."""
        return None

    def recitation_agrees(self, problem: Problem, answer: str, recitation: str) -> bool:
        """Whether the model's recitation (its completion of ``recitation_prompt``) states ``answer``."""
        return True

    @property
    def recitation_budget(self) -> int:
        """How many new tokens a recitation may take."""
        return 128

    def answer_budget(self, problem: Problem) -> int:
        """How many new tokens an answer may take; generation stops there."""
        return 32

    def parse_problem(self, canonical: str, difficulty: int, data: dict[str, Any] | None = None) -> Problem:
        """The problem a candidate names (workers pass problems over Kafka in canonical form)."""
        return Problem(self.name, difficulty, canonical, dict(data or {}))

    def training_example(self, problem: Problem, answer: str, rng: random.Random) -> Example:
        """The example a sample with this (self-generated) answer teaches."""
        return Example(self.prompt(problem), self.write_answer(problem, answer))

    def for_target(self, target: int) -> "TaskFamily":
        """The family as a round aimed at ``target`` trains with it (its training examples may depend on how far
        the round reaches); the same family by default."""
        return self

    def replay_examples(self, rng: random.Random, count: int) -> list[Example]:
        """Examples of the original easy data the base model was trained on, mixed into every round."""
        return []

    def eval_ids(self, difficulties: range | list[int]) -> set[str]:
        return {p.sample_id for d in difficulties for p in self.eval_suite(d)}



class GroundedFamily(TaskFamily):
    """A family whose answers are checked against a corpus: the verifier retrieves evidence for each answer from the
    FAISS index of ``corpus()`` and keeps only supported ones; a question the corpus does not answer can teach the
    family's ``unknown_answer``."""

    verifier = "retrieval"

    @abstractmethod
    def corpus(self) -> list[Passage]:
        """The reference passages the evidence check retrieves from."""

    def subject(self, problem: Problem) -> str | None:
        """What a passage must mention to answer the problem (a person, say); None: judge passages by embeddings."""
        return None

    def stated_value(self, sentence: str) -> str | None:
        """The value a corpus sentence states, where the family can read it; None: the answer's words must occur."""
        return None

    def sentence_answers(self, problem: Problem, sentence: str) -> bool | None:
        """Whether a corpus sentence states what the problem asks; None where the family cannot tell."""
        return None


def mastered_length(accuracy: Mapping[int, float], threshold: float = 0.95) -> int:
    """The longest difficulty D such that every measured difficulty up to D reaches the threshold."""
    best = 0
    for difficulty in sorted(accuracy):
        if accuracy[difficulty] < threshold:
            break
        best = difficulty
    return best


def mastered(scores: Iterable[EvalScore], threshold: float = 0.95) -> int:
    return mastered_length({s.difficulty: s.accuracy for s in scores}, threshold)
