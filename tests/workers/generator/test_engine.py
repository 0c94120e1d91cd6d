import pytest
import torch

from workers.generator import GenerationEngine, SamplingSpec
from tasks.arithmetic_format import format_prompt
from workers.trainer import LoraTrainingConfig, train_lora

PROMPTS = [format_prompt(12, 34), format_prompt(5, 678), format_prompt(90, 9)]


def test_k_answers_per_prompt_greedy_first(tiny_model_dir):
    engine = GenerationEngine(tiny_model_dir, device="cpu")
    spec = SamplingSpec(k=3, temperature=1.0, max_new_tokens=6)
    answers = engine.generate(PROMPTS, spec)
    assert [len(a) for a in answers] == [3, 3, 3]
    again = engine.generate(PROMPTS, spec)
    assert [a[0] for a in answers] == [a[0] for a in again]  # the greedy answer is deterministic
    greedy_only = engine.generate(PROMPTS, SamplingSpec(k=1, max_new_tokens=6))
    assert [a[0] for a in greedy_only] == [a[0] for a in answers]


def test_k_answers_are_shared_among_a_problems_renderings(tiny_model_dir):
    engine = GenerationEngine(tiny_model_dir, device="cpu")
    spec = SamplingSpec(k=5, temperature=1.0, max_new_tokens=6)
    swapped = [format_prompt(34, 12), format_prompt(678, 5), format_prompt(9, 90)]
    answers = engine.generate_renderings([[p, q] for p, q in zip(PROMPTS, swapped)], spec)
    assert [len(a) for a in answers] == [5, 5, 5]
    greedy = engine.generate(PROMPTS, SamplingSpec(k=1, max_new_tokens=6))
    greedy_swapped = engine.generate(swapped, SamplingSpec(k=1, max_new_tokens=6))
    assert [a[0] for a in answers] == [g[0] for g in greedy]  # 3 answers of the first rendering, greedy first
    assert [a[3] for a in answers] == [g[0] for g in greedy_swapped]  # then 2 of the second, greedy first
    with pytest.raises(ValueError, match="same number of renderings"):
        engine.generate_renderings([[PROMPTS[0]], PROMPTS[:2]], spec)


def test_adapters_swap_in_place_without_reloading_the_base(tiny_model_dir, addition_examples, tmp_path):
    config = LoraTrainingConfig(rank=4, alpha=8, steps=6, batch_size=8, lr=5e-2, warmup_steps=0)
    for name, seed in (("a1", 1), ("a2", 2)):
        train_lora(base_model=tiny_model_dir, examples=addition_examples, out_dir=tmp_path / name,
                   config=config.model_copy(update={"seed": seed}))
    engine = GenerationEngine(tiny_model_dir, device="cpu")
    base_weight = engine.base.get_input_embeddings().weight
    pointer = base_weight.data_ptr()
    spec = SamplingSpec(k=1, max_new_tokens=8)
    plain = engine.generate(PROMPTS, spec)

    engine.use_adapter("a1", tmp_path / "a1")
    first = engine.generate(PROMPTS, spec)
    engine.use_adapter("a2", tmp_path / "a2")
    assert engine.adapter_id == "a2"
    assert list(engine.model.peft_config) == ["a2"]  # the old adapter is unloaded, not piled up
    assert engine.base.get_input_embeddings().weight.data_ptr() == pointer
    second = engine.generate(PROMPTS, spec)
    assert first != plain or second != plain

    engine.use_adapter(None)
    assert engine.generate(PROMPTS, spec) == plain
    assert torch.equal(engine.base.get_input_embeddings().weight, base_weight)


def _teacher_forced_probability(engine, prompt: str, text: str, max_new_tokens: int) -> float:
    tokenizer = engine.tokenizer
    prompt_ids = tokenizer(prompt, return_tensors="pt")["input_ids"][0]
    new_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(new_ids) < max_new_tokens:  # it stopped: the end of sequence is part of what it said
        new_ids = new_ids + [tokenizer.eos_token_id]
    ids = torch.cat([prompt_ids, torch.tensor(new_ids, dtype=prompt_ids.dtype)])
    with torch.no_grad():
        logprobs = engine.model(ids.unsqueeze(0)).logits[0].log_softmax(-1)
    return torch.tensor(sum(logprobs[i, ids[i + 1]].item() for i in range(len(prompt_ids) - 1, len(ids) - 1))).exp().item()


def test_scored_completions_carry_the_probability_the_model_gave_them(tiny_model_dir):
    engine = GenerationEngine(tiny_model_dir, device="cpu")
    scored = engine.generate_scored(PROMPTS, max_new_tokens=6)
    greedy = engine.generate(PROMPTS, SamplingSpec(k=1, max_new_tokens=6))
    assert [text for text, _ in scored] == [g[0] for g in greedy]
    for prompt, (text, probability) in zip(PROMPTS, scored):
        assert 0.0 < probability <= 1.0
        assert probability == pytest.approx(_teacher_forced_probability(engine, prompt, text, 6), rel=1e-4)


def test_a_scored_completion_ends_at_its_end_of_sequence(tiny_model_dir):
    """Rows that end early are padded to the longest one; the padding is not part of what they said."""
    engine = GenerationEngine(tiny_model_dir, device="cpu")
    eos = engine.tokenizer.eos_token_id
    prompts = [format_prompt(a, b) for a, b in ((1, 2), (34, 5), (678, 90), (12, 3456), (7, 7), (99, 1), (5, 55))]
    head = engine.base.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
    engine.base.lm_head = biased
    batch = engine.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():  # how far each prompt's first token is from being the end of sequence
        logits = engine.model(**batch).logits[:, -1]
        margins = sorted((logits.max(-1).values - logits[:, eos]).tolist())
        biased.bias[eos] = (margins[len(margins) // 2 - 1] + margins[len(margins) // 2]) / 2
    scored = engine.generate_scored(prompts, max_new_tokens=6)
    assert "" in {text for text, _ in scored} and {len(text) for text, _ in scored} != {0}
    for prompt, (text, probability) in zip(prompts, scored):
        assert probability == pytest.approx(_teacher_forced_probability(engine, prompt, text, 6), rel=1e-4)
