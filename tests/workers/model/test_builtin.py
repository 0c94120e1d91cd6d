import json
import random
import subprocess
import sys

from workers.model.builtin import BuiltinConfig, bootstrap, easy_examples, heldout_problems, is_heldout


def test_bootstrap_saves_an_ordinary_model_directory_with_its_report(tmp_path):
    config = BuiltinConfig(max_digits=2, layers=1, hidden=32, heads=2, intermediate=64, steps=3, batch_size=8,
                           warmup_steps=1, threads=1, eval_count=5, scarce_digits=0)
    report = bootstrap(config, tmp_path)
    saved = json.loads((tmp_path / "eval_report.json").read_text())
    assert saved["config"]["max_digits"] == 2 and set(saved["accuracy"]) == {"1", "2", "3", "4"}
    assert report["parameters"] > 0
    script = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer; "
        f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}); t = AutoTokenizer.from_pretrained({str(tmp_path)!r}); "
        "print(type(m).__name__, m.config.num_hidden_layers, len(t))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["LlamaForCausalLM", "1"]


def test_the_bootstrap_never_trains_on_the_evaluation_suite():
    held = {problem for digits in (1, 2, 3) for problem in heldout_problems(digits, 200)}
    assert held and all(is_heldout(a, b) for a, b in held)
    examples = easy_examples(BuiltinConfig(max_digits=3), random.Random(0), 3000)
    def operands(prompt: str) -> tuple[int, int]:
        left, right = prompt.rstrip("=").split("+")
        # Digits are written least significant first, each behind its hint letter.
        return tuple(int("".join(ch for ch in side if ch.isdigit())[::-1]) for side in (left, right))

    assert not {operands(e.prompt) for e in examples} & held


def test_a_models_report_tells_the_family_what_it_was_trained_on(tmp_path):
    from tasks.arithmetic import Arithmetic
    from workers.model.builtin import REPORT_NAME, family_options, labelled_options

    assert labelled_options(tmp_path) == {}  # not a builtin model: the family's defaults
    config = BuiltinConfig(max_digits=3, scarce_digits=7, scarce_count=4, scarce_share=0.1)
    (tmp_path / REPORT_NAME).write_text(json.dumps({"config": {**config.__dict__, "retired_option": 1}}))
    assert labelled_options(tmp_path) == family_options(config)
    family = Arithmetic(**labelled_options(tmp_path))
    assert family.easy_digits == 3 and len(family.scarce_problems()) == 16
    (tmp_path / REPORT_NAME).write_text(json.dumps({"config": {"max_digits": 4}}))  # written before scarce_*
    assert Arithmetic(**labelled_options(tmp_path)).scarce_problems() == ()


def test_the_family_defaults_describe_the_default_builtin_model():
    import inspect

    from tasks.arithmetic import Arithmetic
    from workers.model.builtin import family_options

    defaults = {k: p.default for k, p in inspect.signature(Arithmetic).parameters.items()}
    assert all(defaults[k] == v for k, v in family_options(BuiltinConfig()).items())
