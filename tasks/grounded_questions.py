"""The grounded QA family's questions: the phrasings training asks in, the ones only the held-out suite uses, and
reading a question back into its person and attribute.

Training asks each attribute in many ways (question word first, subject first, an instruction), each also wrapped
in words that do not change what is asked ("please ...", "do you know ..."), so that the model learns to read the
attribute and the person from a question rather than to recognise a sentence; the held-out phrasings are new
wording of the same kinds. A real LLM writes its own questions from ``QUESTION_PROMPT``.
"""

from __future__ import annotations

import hashlib
import json
import re

# No subject-first training phrasing opens with the word a held-out one opens with (``{e} has ...``, ``{e} is ...``),
# so that no held-out question begins as a training question about another attribute does. Where a core asks with
# ``what`` or ``which`` before a noun (``what pet``, ``which town``), training asks it with the other word too
# (``QUESTION_WORD_NOUNS``): the two are interchangeable there, and a model taught only one pair for a noun does
# not read the other as a question about that noun.
TRAIN_CORES: dict[str, tuple[str, ...]] = {
    "home": ("where does {e} live", "which town does {e} live in", "what is the home town of {e}",
             "{e} calls what town home", "give the home town of {e}", "say where {e} lives",
             "in what town does {e} live", "what town is home to {e}", "where is the home of {e}",
             "{e} makes a home in what town", "state the home town of {e}"),
    "job": ("what does {e} work as", "what is the job of {e}", "what work does {e} do",
            "{e} earns a living doing what", "give the job of {e}", "say what {e} works as",
            "what job does {e} have", "which trade does {e} follow", "what is {e} by trade",
            "{e} does what for work", "state the job of {e}"),
    "color": ("what color does {e} like", "what is the favorite color of {e}", "{e} prefers what color",
              "give the favorite color of {e}", "say what color {e} likes", "which color does {e} like best",
              "what color is the favorite of {e}", "{e} favors what color", "state the favorite color of {e}"),
    "pet": ("what pet does {e} have", "which animal does {e} keep as a pet", "{e} keeps what animal",
            "give the pet animal of {e}", "say what pet {e} has", "what kind of pet does {e} keep",
            "what animal is the pet of {e}", "{e} owns what kind of pet", "state the pet animal of {e}"),
    "age": ("how old is {e}", "what is the age of {e}", "{e} reached what age", "give the age of {e}",
            "say how old {e} is", "what age is {e}", "{e} was born how many years ago",
            "state the age of {e}"),
}
WRAPPERS = ("{q}", "please {q}", "{q} please", "do you know {q}", "i wonder {q}", "quick question {q}",
            "can you say {q}", "so {q}", "{q} if you know", "remind me {q}")
HELDOUT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "home": ("{e} lives in which town", "name the town where {e} lives"),
    "job": ("{e} works as what", "name the job {e} does"),
    "color": ("{e} likes which color", "name the color {e} likes"),
    "pet": ("{e} has which pet", "name the pet of {e}"),
    "age": ("{e} is how many years old", "tell the age of {e}"),
}

QUESTION_WORD_NOUNS = frozenset({"town", "work", "job", "trade", "color", "pet", "animal", "kind", "age"})
_QUESTION_WORD = re.compile(rf"\b(what|which) (?=(?:{'|'.join(sorted(QUESTION_WORD_NOUNS))})\b)")


def with_either_question_word(core: str) -> tuple[str, ...]:
    """The core, and the core with ``what`` and ``which`` swapped where one of them asks for a noun."""
    swapped = _QUESTION_WORD.sub(lambda m: "which " if m[1] == "what" else "what ", core)
    return (core,) if swapped == core else (core, swapped)


_HELDOUT_FORMS = frozenset(form for forms in HELDOUT_TEMPLATES.values() for form in forms)
TRAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    relation: tuple(form for wrapper in WRAPPERS for core in cores for variant in with_either_question_word(core)
                    if (form := wrapper.replace("{q}", variant)) not in _HELDOUT_FORMS)
    for relation, cores in TRAIN_CORES.items()
}


def phrasings_fingerprint() -> str:
    """A short hash of every training and held-out phrasing: what a model taught the QA format was asked in."""
    text = json.dumps([TRAIN_TEMPLATES, HELDOUT_TEMPLATES], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


QUESTION_PROMPT = """Write one short question that the passage below answers, about one person and one fact.
Use only letters and spaces, no question mark. Reply with the question only.

Passage: {passage}
Question:"""


def match_template(question: str) -> tuple[str, str, str, str] | None:
    """(entity, relation, template, phrasing) of a question written from a template, else None: each capitalized
    word in turn is taken as the subject and the rest looked up as a template (the question's first letter also
    lowercased, as a sentence may begin capitalized)."""
    for text in dict.fromkeys((question, question[:1].lower() + question[1:])):
        words = text.split(" ")
        for i, word in enumerate(words):
            if _NAME.fullmatch(word):
                found = _TEMPLATES.get(" ".join([*words[:i], "{e}", *words[i + 1:]]))
                if found:
                    return (word, *found)
    return None


_NAME = re.compile(r"[A-Z][a-z]+")
_TEMPLATES: dict[str, tuple[str, str, str]] = {}  # template -> (relation, template, phrasing)
for _phrasing, _templates in (("train", TRAIN_TEMPLATES), ("heldout", HELDOUT_TEMPLATES)):
    for _relation, _forms in _templates.items():
        for _form in _forms:
            _TEMPLATES.setdefault(_form, (_relation, _form, _phrasing))


def subject_of(text: str) -> str | None:
    """The first capitalized word that is not a question or function word (``Where does Kavo live`` -> Kavo)."""
    for word in re.findall(r"[A-Za-z]+", text):
        if word[0].isupper() and word.lower() not in _FUNCTION_WORDS:
            return word
    return None


_FUNCTION_WORDS = frozenset(
    "what where which who whom whose when why how name tell give say does do did is are was were the a an in of for to "
    "and or on at by with from q a please so quick question can you if know remind me wonder i state".split()
)
