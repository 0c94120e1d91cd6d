import json
import random
import re

from bench.grounded_base import READING_FORMS, GroundedConfig, bootstrap, passage_example, training_batch
from tasks.grounded import UNKNOWN, GroundedQA, statement


def test_a_passage_keeps_every_sentence_in_a_shuffled_order():
    text = "Kavo lives in Tesa. Kavo works as a cook. Kavo likes the color red. Kavo is 34 years old."
    rng = random.Random(0)
    orders = {passage_example(text, rng).answer for _ in range(20)}
    assert len(orders) > 1
    for order in orders:
        assert sorted(s.strip() for s in order.split(".") if s.strip()) == sorted(
            s.strip() for s in text.split(".") if s.strip())
    assert passage_example(text, rng).prompt == ""


def test_a_reworded_passage_states_the_same_facts_in_other_words():
    facts = {"home": "Tesa", "job": "cook", "color": "red", "pet": "owl", "age": "34"}
    text = " ".join(READING_FORMS[r][0].format(e="Kavo", v=v) for r, v in facts.items())
    patterns = [(r, re.compile("^" + re.escape(f).replace(re.escape("{e}"), "Kavo").replace(re.escape("{v}"),
                                                                                           "(\\w+)") + "$"))
                for r, forms in READING_FORMS.items() for f in forms]
    rng = random.Random(3)
    wordings = set()
    for _ in range(30):
        sentences = [s.strip() + "." for s in passage_example(text, rng, reworded=True).answer.split(".") if s.strip()]
        said = {}
        for sentence in sentences:
            relation, value = next((r, m.group(1)) for r, p in patterns if (m := p.match(sentence)))
            said[relation] = value
        assert said == facts  # every fact, each once, with its value
        wordings.update(sentences)
    assert len(wordings) > 10
    assert statement(READING_FORMS["pet"][0].format(e="Kavo", v="owl").rstrip(".")) == ("Kavo", "pet", "owl")


def test_a_batch_mixes_corpus_text_with_easy_tier_questions_only():
    family = GroundedQA(entities=30, tiers=3)
    config = GroundedConfig(batch_size=40, passage_share=0.25)
    batch = training_batch(family, family.corpus_text(), config, random.Random(1))
    text, qa = batch[:10], batch[10:]
    assert len(qa) == 30 and all(e.prompt == "" for e in text)
    tier_one = {p.data["entity"] for p in family.make_problems(1, 10_000, random.Random(2))} & set(family.world.people)
    asked = [family.problem_from_question(e.prompt[3:-4]) for e in qa if e.prompt.startswith("Q: ")]
    assert len(asked) == len(qa) and all(p.data.get("phrasing") == "train" for p in asked)
    named = {*family.world.people, *family.world.strangers}
    assert all(p.data["entity"] in tier_one or p.data["entity"] not in named for p in asked)  # or a new stranger
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


def test_a_cached_model_trained_with_other_settings_is_used_with_a_warning(tmp_path, capsys):
    from dataclasses import asdict

    from tasks.grounded_questions import phrasings_fingerprint
    from bench.grounded_base import REPORT_NAME, ensure_grounded

    target = tmp_path / "grounded"
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / REPORT_NAME).write_text(json.dumps({"config": {**asdict(GroundedConfig()), "steps": 5,
                                                             "reading_forms": False}}))
    assert ensure_grounded(target) == target  # not retrained: the cache is the user's
    warning = capsys.readouterr().out
    assert "reading_forms, steps" in warning and "delete it to retrain" in warning
    (target / REPORT_NAME).write_text(json.dumps({"config": asdict(GroundedConfig()), "phrasings": "0" * 12}))
    ensure_grounded(target)
    assert "(question phrasings)" in capsys.readouterr().out  # taught the QA format in other words
    (target / REPORT_NAME).write_text(json.dumps({"config": asdict(GroundedConfig()),
                                                  "phrasings": phrasings_fingerprint()}))
    ensure_grounded(target)
    assert "warning" not in capsys.readouterr().out
