"""Verifier checks that retrieve from the FAISS memory: novelty, decontamination, and evidence support.

Each returns its check result *and* the evidence it looked at (``check_with_evidence``); the chain puts the
evidence in the verdict, so the store keeps which items were retrieved, their scores, and (in the reasons) why
the verdict went the way it did. The thresholds are ``RetrievalSettings`` fields, measured in docs/retrieval.md.
One module, because the three checks share one memory, one way of reporting evidence and one set of thresholds.

    memory = Memory.open()
    chain = retrieval_chain(get_family("grounded"), memory)    # format, self_consistency, novelty,
    verdict = chain.verify(candidate, problem)                 # decontamination, evidence
    verdict.evidence   # [Evidence(id="corpus-grounded/p0042", score=0.71, text="Kavo lives in Tesa. ..."), ...]

- ``novelty``: the nearest *accepted* sample of the family (another id than the candidate's own) must be below
  ``novelty_threshold``; a near-duplicate is rejected with the neighbour's id in the reason.
- ``decontamination``: the nearest *evaluation* item must be below ``contamination_threshold`` (the problem itself
  being an evaluation item counts, at cosine 1); a paraphrase of a held-out question is rejected.
- ``evidence`` (grounded families): the top ``evidence_k`` passages for the question; a sentence of theirs that
  mentions the question's subject *answers* it when their relation views (the texts with names and numbers
  masked, so that only what is asked remains) reach ``relevance_threshold``. The most relevant answering sentence
  decides: the answer is supported if the sentence contains it, contradicted if not (the sentence and its passage
  are the reason). With no answering sentence the corpus does not know, and only the family's unknown answer
  ("I do not know") is accepted; that answer is rejected wherever the corpus does answer.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tasks.base import GroundedFamily, Problem, TaskFamily
from schemas.messages import CheckResult, Evidence
from workers.verifier.chain import VerifierChain, family_checks
from workers.verifier.checks import Check, Reading, build_check, register_check
from workers.verifier.memory import Memory, RetrievalSettings, index_name
from workers.verifier.vector_index import Hit

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"[a-z0-9]+")


class RetrievalCheck(Check):
    """A check that searches the memory; ``check_with_evidence`` also returns what it retrieved."""

    def __init__(self, memory: Memory, *, index: str | None = None) -> None:
        self.memory = memory
        self.index = index  # None: the index of the candidate's family

    def index_for(self, kind: str, family: TaskFamily) -> str:
        return self.index or index_name(kind, family.name)  # type: ignore[arg-type]

    def check(self, reading: Reading) -> CheckResult:
        return self.check_with_evidence(reading)[0]

    @abstractmethod
    def check_with_evidence(self, reading: Reading) -> tuple[CheckResult, list[Evidence]]: ...


def problem_text(problem: Problem) -> str:
    """The text a problem is embedded by: its canonical text (the question, for a grounded family), which is also
    what a Candidate carries, so the index updater embeds accepted samples the same way."""
    return problem.canonical


def _search(memory: Memory, index: str, text: str, k: int) -> list[Hit]:
    memory.index(index).refresh()  # one indexed query when nothing changed: every search sees the latest writes
    return memory.search(index, [text], k)[0]


def _evidence(index: str, hits: list[Hit]) -> list[Evidence]:
    return [Evidence(id=f"{index}/{hit.id}", score=hit.score, text=hit.text) for hit in hits]


class _NearDuplicate(RetrievalCheck):
    kind: str
    what: str

    def __init__(self, memory: Memory, threshold: float, *, k: int = 3, index: str | None = None) -> None:
        super().__init__(memory, index=index)
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"{self.name} threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.k = k

    def neighbours(self, reading: Reading) -> tuple[str, list[Hit]]:
        index = self.index_for(self.kind, reading.family)
        return index, _search(self.memory, index, problem_text(reading.problem), self.k + 1)


@register_check("novelty")
class Novelty(_NearDuplicate):
    """A problem too close to an accepted sample of its family adds nothing new."""

    kind, what = "accepted", "accepted sample"

    def __init__(self, memory: Memory, threshold: float = 0.9, **options) -> None:
        super().__init__(memory, threshold, **options)

    def check_with_evidence(self, reading: Reading) -> tuple[CheckResult, list[Evidence]]:
        index, hits = self.neighbours(reading)
        own = reading.problem.sample_id
        hits = [h for h in hits if h.id != own][: self.k]  # a re-delivered candidate is not its own duplicate
        evidence = _evidence(index, hits)
        if not hits:
            return self.result(True, 0.0, "no accepted sample of this family yet"), evidence
        top = hits[0]
        if top.score >= self.threshold:
            reason = (f"near-duplicate of accepted sample {top.id} (cosine {top.score:.3f} >= {self.threshold:.2f}): "
                      f"{top.text!r}")
            return self.result(False, top.score, reason), evidence
        reason = f"nearest accepted sample {top.id} at cosine {top.score:.3f} < {self.threshold:.2f}"
        return self.result(True, top.score, reason), evidence


@register_check("decontamination")
class Decontamination(_NearDuplicate):
    """A problem close to a held-out evaluation item (a paraphrase of it) must never be trained on."""

    kind, what = "eval", "evaluation item"

    def __init__(self, memory: Memory, threshold: float = 0.8, **options) -> None:
        super().__init__(memory, threshold, **options)

    def check_with_evidence(self, reading: Reading) -> tuple[CheckResult, list[Evidence]]:
        index, hits = self.neighbours(reading)
        hits = hits[: self.k]
        evidence = _evidence(index, hits)
        if not hits:
            return self.result(True, 0.0, "the evaluation index is empty"), evidence
        top = hits[0]
        if top.id == reading.problem.sample_id or top.score >= self.threshold:
            reason = f"contaminated: near-duplicate of evaluation item {top.id} (cosine {top.score:.3f} >= " \
                     f"{self.threshold:.2f}): {top.text!r}"
            return self.result(False, top.score, reason), evidence
        reason = f"nearest evaluation item {top.id} at cosine {top.score:.3f} < {self.threshold:.2f}"
        return self.result(True, top.score, reason), evidence


# -- evidence support -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    passage: Hit
    text: str
    relevance: float = 0.0


def relation_view(text: str, subject: str | None) -> str:
    """The text with its subject, numbers and (non-initial) capitalized names masked: what is asked or stated
    about the subject, with nothing left that names it. Sentence embeddings are dominated by rare names; this
    is what makes "which relation" measurable (docs/retrieval.md)."""
    if subject:
        text = re.sub(rf"\b{re.escape(subject)}\b", " ", text)
    text = re.sub(r"\b\d+\b", " ", text)
    text = re.sub(r"(?<=[a-z,;:]\s)[A-Z][a-z]+", " ", text)
    return " ".join(text.split())


def mentions(text: str, subject: str) -> bool:
    return re.search(rf"\b{re.escape(subject)}\b", text, flags=re.IGNORECASE) is not None


def states(family: TaskFamily, sentence: str, answer: str) -> bool:
    """Whether a corpus sentence says this answer: the family reads the value a sentence states where it can
    (``stated_value``; then ``Kavo works as a cook`` says ``cook`` and not ``a``), else the answer's words must occur
    in it."""
    value = family.stated_value(sentence) if isinstance(family, GroundedFamily) else None
    if value is not None:
        return value.lower() == answer.lower()
    return contains_answer(sentence, answer)


def contains_answer(text: str, answer: str) -> bool:
    """Whether the answer's words occur, in order and adjacent, among the text's words (case-insensitive)."""
    words, wanted = _TOKEN.findall(text.lower()), _TOKEN.findall(answer.lower())
    if not wanted:
        return False
    return any(words[i:i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1))


@register_check("evidence")
class EvidenceSupport(RetrievalCheck):
    """The corpus must support the answer; where it has no answer, only "I do not know" is right."""

    def __init__(self, memory: Memory, relevance_threshold: float = 0.27, *, k: int = 5, index: str | None = None,
                 unknown_answer: str | None = None, choose: bool = False, abstain: bool = False) -> None:
        """``choose``: judge every distinct answer of the k, most votes first, and label the sample with the first
        the corpus supports (``Reading.chosen``); otherwise only the majority answer is judged. ``abstain``: where
        the corpus does not answer the question, label the sample with the unknown answer whatever the k answers
        said (``Reading.decided_by``): what teaches a model to say "I do not know" instead of guessing."""
        super().__init__(memory, index=index)
        if not 0.0 < relevance_threshold <= 1.0 or k < 1:
            raise ValueError("evidence needs a relevance_threshold in (0, 1] and k >= 1")
        self.relevance_threshold = relevance_threshold
        self.k = k
        self.unknown_answer = unknown_answer
        self.choose = choose
        self.abstain = abstain

    def answering(self, family: TaskFamily, problem: Problem) -> tuple[str, list[Hit], str | None, list[Sentence]]:
        """The passages retrieved for the question, its subject, and the sentences about the subject that answer
        it, most relevant first. Where the family can tell whether a sentence answers the question
        (``family.sentence_answers(problem, sentence)`` is True or False for every sentence: a question it parsed
        and sentences written the way its corpus writes facts) that decides; otherwise relevance is the cosine of
        the relation views, at or above ``relevance_threshold``."""
        index = self.index_for("corpus", family)
        question = problem_text(problem)
        passages = _search(self.memory, index, question, self.k)
        subject = family.subject(problem) if isinstance(family, GroundedFamily) else None
        if not subject or not isinstance(family, GroundedFamily):
            return index, passages, None, []
        about = [Sentence(p, s) for p in passages for s in _SENTENCE_END.split(p.text or "") if mentions(s, subject)]
        if not about:
            return index, passages, subject, []
        judged = [family.sentence_answers(problem, s.text) for s in about]
        if all(j is not None for j in judged):  # the family reads its corpus's sentences: no embedding needed
            return index, passages, subject, [Sentence(s.passage, s.text, 1.0) for s, j in zip(about, judged) if j]
        views = self.memory.embedder.encode(
            [relation_view(question, subject)] + [relation_view(s.text, subject) for s in about]
        )
        scores = views[1:] @ views[0]
        scored = sorted((Sentence(s.passage, s.text, round(float(x), 6)) for s, x in zip(about, scores)),
                        key=lambda s: -s.relevance)
        return index, passages, subject, [s for s in scored if s.relevance >= self.relevance_threshold]

    def check_with_evidence(self, reading: Reading) -> tuple[CheckResult, list[Evidence]]:
        family, problem = reading.family, reading.problem
        unknown = self.unknown_answer or family.unknown_answer
        index, passages, subject, answering = self.answering(family, problem)
        evidence = _evidence(index, passages)
        answer, _ = reading.label
        if self.abstain and subject is not None and not answering and unknown is not None:
            reading.chosen, reading.decided_by = unknown, self.name
            answer = unknown
        elif self.choose and subject is not None:
            answer = self._supported_choice(reading, unknown, answering) or answer
        if answer is None:
            return self.result(False, 0.0, "no answer to look up"), evidence
        if subject is None:
            return self.result(False, 0.0, "the question names no subject to look up"), evidence
        if not answering:
            where = (f"no retrieved passage about {subject!r} answers it" if any(
                mentions(p.text or "", subject) for p in passages) else f"no retrieved passage mentions {subject!r}")
            if answer == unknown:
                return self.result(True, 1.0, f"the corpus does not know: {where}; {answer!r} is right"
                                              f"{_votes(reading, answer)}"), evidence
            return self.result(False, 0.0, f"unsupported: {where}; only {unknown!r} is supported"), evidence
        best = answering[0]
        said = f"{best.passage.id} {best.text!r} (relevance {best.relevance:.2f})"
        if answer == unknown:
            return self.result(False, 0.0, f"the corpus answers it: {said}; {answer!r} is wrong here"), evidence
        if states(family, best.text, answer):
            return self.result(True, best.relevance, f"supported by {said}{_votes(reading, answer)}"), evidence
        return self.result(False, 0.0, f"contradicted by {said}, which does not say {answer!r}"), evidence

    def _supported_choice(self, reading: Reading, unknown: str | None, answering: list[Sentence]) -> str | None:
        """The answer with the most votes that the corpus supports (made ``reading.chosen``), or None."""
        counts = Counter(a for a in reading.answers if a is not None)
        for answer, _ in counts.most_common():
            right = (answer != unknown and states(reading.family, answering[0].text, answer)) if answering \
                else answer == unknown
            if right:
                reading.chosen = answer
                return answer
        return None


def _votes(reading: Reading, answer: str) -> str:
    votes = sum(a == answer for a in reading.answers)
    return f"; {votes} of {len(reading.answers)} answers say {answer!r}"


# -- the reference indexes ---------------------------------------------------------------------------------------


def eval_difficulties(family: TaskFamily) -> Iterable[int]:
    """The difficulties whose evaluation items go into the eval index (a family with tiers says which)."""
    return family.difficulties


def sync_reference_indexes(memory: Memory, family: TaskFamily, difficulties: Iterable[int] | None = None) -> dict:
    """Make ``eval-<family>`` hold exactly the family's evaluation items and ``corpus-<family>`` its passages
    (for a family with a corpus). Only new or changed items are embedded; returns what changed."""
    problems = [p for d in (difficulties or eval_difficulties(family)) for p in family.eval_suite(d)]
    unique = {p.sample_id: p for p in problems}
    report = {"eval": memory.sync(index_name("eval", family.name), list(unique),
                                  [p.canonical for p in unique.values()],
                                  [{"difficulty": p.difficulty} for p in unique.values()])}
    if isinstance(family, GroundedFamily):
        passages = family.corpus()
        report["corpus"] = memory.sync(index_name("corpus", family.name), [p.id for p in passages],
                                       [p.text for p in passages], [{"entity": p.entity} for p in passages])
    return report


# -- a family's retrieval chain ----------------------------------------------------------------------------------


def retrieval_chain(
    family: TaskFamily,
    memory: Memory,
    settings: RetrievalSettings | None = None,
    *,
    agreement: float = 0.5,
    sync_reference: bool = True,
    choose_supported: bool = False,
    abstain_unsupported: bool = False,
    oracle: bool = False,
) -> VerifierChain:
    """format, self_consistency, novelty, decontamination, and (for a family with a corpus) evidence.

    ``sync_reference`` first makes the family's evaluation index (and corpus index) current; it is idempotent
    and cheap when nothing changed. ``choose_supported`` (a family with a corpus): the evidence check runs first
    and picks, among the k answers, the one the corpus supports; self-consistency then asks how many of the k
    say it (so ``agreement`` is the share of answers that must agree with the evidence). ``abstain_unsupported``:
    a question the corpus does not answer is labelled with the family's unknown answer by the evidence check,
    whatever the model said (the evidence check then also runs first). ``oracle``: the label must also be the true
    answer (a measurement mode, as in the label-free chain).
    """
    settings = settings or RetrievalSettings()
    grounded = isinstance(family, GroundedFamily)
    if sync_reference:
        sync_reference_indexes(memory, family)
    checks: list[Check] = [
        build_check("format"),
        build_check("self_consistency", threshold=agreement),
        *family_checks(family),
        build_check("novelty", memory=memory, threshold=settings.novelty_threshold),
        build_check("decontamination", memory=memory, threshold=settings.contamination_threshold),
    ]
    if grounded:
        evidence = build_check("evidence", memory=memory, relevance_threshold=settings.relevance_threshold,
                               k=settings.evidence_k, choose=choose_supported, abstain=abstain_unsupported)
        checks = [evidence, *checks] if choose_supported or abstain_unsupported else [*checks, evidence]
    if oracle:
        checks.append(build_check("oracle"))
    return VerifierChain(family, checks)
