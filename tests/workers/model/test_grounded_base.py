import json
import random

from loop.families.grounded import UNKNOWN, GroundedQA
from workers.model.grounded_base import GroundedConfig, bootstrap, passage_example, training_batch


def test_a_passage_keeps_every_sentence_in_a_shuffled_order():
    text = "Kavo lives in Tesa. Kavo works as a cook. Kavo likes the color red. Kavo is 34 years old."
    rng = random.Random(0)
    orders = {passage_example(text, rng).answer for _ in range(20)}
    assert len(orders) > 1
    for order in orders:
        assert sorted(s.strip() for s in order.split(".") if s.strip()) == sorted(
            s.strip() for s in text.split(".") if s.strip())
    assert passage_example(text, rng).prompt == ""


def test_a_batch_mixes_corpus_text_with_easy_tier_questions_only():
    family = GroundedQA(entities=30, tiers=3)
    config = GroundedConfig(batch_size=40, passage_share=0.25)
    batch = training_batch(family, family.corpus_text(), config, random.Random(1))
    text, qa = batch[:10], batch[10:]
    assert len(qa) == 30 and all(e.prompt == "" for e in text)
    easy = {p.canonical for p in family.make_problems(1, 10_000, random.Random(2))}
    assert all(e.prompt.startswith("Q: ") and e.prompt[3:-4] in easy for e in qa)
    held = {family.prompt(p) for tier in family.difficulties for p in family.eval_suite(tier)}
    assert not {e.prompt for e in qa} & held


def test_bootstrap_saves_a_model_with_its_heldout_rates(tmp_path):
    config = GroundedConfig(layers=1, hidden=32, heads=2, intermediate=64, steps=2, batch_size=8, warmup_steps=1,
                            threads=1)
    bootstrap(config, tmp_path, GroundedQA(entities=30, tiers=3, eval_size=6))
    report = json.loads((tmp_path / "eval_report.json").read_text())
    assert set(report["heldout"]) == {"1", "2", "3", "all"}
    assert report["heldout"]["all"]["n_answerable"] == 18
    assert (tmp_path / "config.json").exists() and (tmp_path / "tokenizer.json").exists()
    assert UNKNOWN == "I do not know"
