"""A builtin model for the grounded QA family: the same tiny Llama, taught the world and the QA format.

The model reads every passage of the corpus as plain text (it must know the world to answer closed-book), and
learns the QA format on the family's easy tiers only (``GroundedQA.replay_examples``: answerable questions with
their fact, unanswerable ones with "I do not know"). The other tiers it has read about but never been asked
about: that is what the loop improves, with the evidence check as its only teacher.

Half of the time a passage is read as the corpus writes it; otherwise its sentences come in a random order, and
each sentence in one of a few wordings (``READING_FORMS``; the corpus itself keeps one): a fact is then stated in
many contexts and words, which is what lets a model answer questions about it later (Allen-Zhu and Li, "Physics
of Language Models 3.1": without such augmentation a model that memorised a biography cannot be asked about it).
Every wording names the person first.

    python bench/grounded_base.py --out data/models/grounded

``bench/grounded.py`` trains it on first use (``ensure_grounded``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.grounded_rates import pooled_rates  # noqa: E402
from tasks.base import Example  # noqa: E402
from tasks.grounded import GroundedQA, statement  # noqa: E402
from tasks.grounded_questions import phrasings_fingerprint  # noqa: E402
from workers.model.builtin import BuiltinConfig, build_model, train  # noqa: E402
from workers.model.tokenizer import build_tokenizer, save_tokenizer  # noqa: E402

REPORT_NAME = "eval_report.json"


@dataclass
class GroundedConfig:
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    intermediate: int = 512
    batch_size: int = 64
    passage_share: float = 0.5  # share of every batch that is corpus text; the rest is easy-tier QA
    steps: int = 4000  # about 40 min on two idle CPU cores
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    seed: int = 0
    threads: int = 2
    family_seed: int = 7  # the world: GroundedQA(seed=...)
    reading_forms: bool = True  # restate each passage sentence in a random wording of READING_FORMS
    canonical_share: float = 0.5  # share of passage reads as the corpus writes it (its order, its wording)
    fresh_strangers: bool = True  # abstentions about a new name each time: GroundedQA(fresh_strangers=...)


# Wordings a passage's facts are read in (the first is the corpus's own), each with the person first.
READING_FORMS: dict[str, tuple[str, ...]] = {
    "home": ("{e} lives in {v}.", "{e} has a home in {v}.", "{e} calls {v} home.", "{e} is from the town of {v}."),
    "job": ("{e} works as a {v}.", "{e} earns a living as a {v}.", "{e} has a job as a {v}.", "{e} is a {v} by trade."),
    "color": ("{e} likes the color {v}.", "{e} is fond of the color {v}.", "{e} has {v} as a favorite color.",
              "{e} loves the color {v} most."),
    "pet": ("{e} has a pet {v}.", "{e} keeps a {v} as a pet.", "{e} owns a pet {v}.", "{e} looks after a pet {v}."),
    "age": ("{e} is {v} years old.", "{e} is aged {v}.", "{e} has lived {v} years.", "{e} turned {v} this year."),
}


def passage_example(text: str, rng: random.Random, reworded: bool = False) -> Example:
    """A passage as a language-modelling example (loss on every character), its sentences shuffled and, if
    ``reworded``, each restated in a random wording of its relation."""
    sentences = [s.strip() + "." for s in text.split(".") if s.strip()]
    if reworded:
        sentences = [_reword(s, rng) for s in sentences]
    rng.shuffle(sentences)
    return Example("", " ".join(sentences))


def _reword(sentence: str, rng: random.Random) -> str:
    stated = statement(sentence)
    if stated is None:
        return sentence
    entity, relation, value = stated
    return rng.choice(READING_FORMS[relation]).format(e=entity, v=value)


def training_batch(family: GroundedQA, passages: list[str], config: GroundedConfig,
                   rng: random.Random) -> list[Example]:
    n_text = round(config.batch_size * config.passage_share)
    batch = [Example("", text) if rng.random() < config.canonical_share else
             passage_example(text, rng, config.reading_forms)
             for text in (rng.choice(passages) for _ in range(n_text))]
    return batch + family.replay_examples(rng, config.batch_size - n_text)


def evaluate_rates(engine, family: GroundedQA) -> dict[str, dict[str, float]]:
    """Answerable accuracy and hallucination on each tier's held-out suite and on all of them ("all"), greedy and
    closed-book, with the engine's active adapter (``bench.grounded_rates.pooled_rates``)."""
    from workers.evaluator import heldout_answers

    suites, answers = {}, {}
    for tier in family.difficulties:
        suites[str(tier)], answers[str(tier)] = heldout_answers(engine, family, tier)
    return pooled_rates(family, suites, answers)


def bootstrap(config: GroundedConfig, out_dir: str | Path, family: GroundedQA | None = None) -> dict:
    """Train from scratch, save model, tokenizer and report to ``out_dir``; return the report."""
    family = family or GroundedQA(seed=config.family_seed, fresh_strangers=config.fresh_strangers)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    tokenizer = build_tokenizer()
    model = build_model(BuiltinConfig(layers=config.layers, hidden=config.hidden, heads=config.heads,
                                      intermediate=config.intermediate), tokenizer)
    passages = family.corpus_text()
    started = time.time()
    loss = train(model, tokenizer, lambda: training_batch(family, passages, config, rng), config.steps, config.lr,
                 config.warmup_steps, config.min_lr_ratio, desc="grounded bootstrap")
    minutes = (time.time() - started) / 60
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    from workers.generator import GenerationEngine

    report = {"config": asdict(config), "phrasings": phrasings_fingerprint(), "parameters": model.num_parameters(), "train_minutes": round(minutes, 2),
              "final_loss": loss, "heldout": evaluate_rates(GenerationEngine(out), family)}
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2))
    return report


def ensure_grounded(target: Path, config: GroundedConfig | None = None) -> Path:
    """Train the grounded base model into ``target`` unless it is already there. A cached model trained with
    other settings, or on other question phrasings (``phrasings_fingerprint``), is used as it is, with a warning
    that names what differs (delete it to retrain)."""
    from workers.model.resolve import train_once

    config = config or GroundedConfig()
    report_path = target / REPORT_NAME
    if report_path.exists():
        report = json.loads(report_path.read_text())
        trained_with = report.get("config", {})
        differ = sorted(k for k, v in asdict(config).items() if trained_with.get(k) != v)
        if report.get("phrasings") != phrasings_fingerprint():
            differ.append("question phrasings")
        if differ:
            print(f"warning: the grounded base model at {target} was trained with other settings ({', '.join(differ)}"
                  f"); using it anyway: delete it to retrain")
    return train_once(target, lambda out: bootstrap(config, out),
                      lambda report: f"grounded base model: trained in {report['train_minutes']} min")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to save the model, tokenizer and eval report")
    for name, value in asdict(GroundedConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    report = bootstrap(GroundedConfig(**args), out)
    print(json.dumps({k: report[k] for k in ("train_minutes", "heldout")}, indent=2))
    return report


if __name__ == "__main__":
    main()
