import subprocess
import sys

from transformers import AutoTokenizer

from tasks.arithmetic_format import format_example
from workers.model.tokenizer import build_tokenizer, save_tokenizer


def test_text_round_trips_character_by_character():
    tokenizer = build_tokenizer()
    example = format_example(957, 68)
    text = example.prompt + example.answer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_saved_tokenizer_loads_with_auto_tokenizer_in_a_fresh_process(tmp_path):
    tokenizer = build_tokenizer()
    save_tokenizer(tokenizer, tmp_path)
    text = format_example(12, 345).prompt
    script = (
        "import sys; from transformers import AutoTokenizer; "
        f"t = AutoTokenizer.from_pretrained({str(tmp_path)!r}); "
        f"ids = t({text!r})['input_ids']; print(ids); assert t.decode(ids, skip_special_tokens=True) == {text!r}"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tokenizer(text)["input_ids"])
    assert AutoTokenizer.from_pretrained(tmp_path).vocab == tokenizer.vocab
